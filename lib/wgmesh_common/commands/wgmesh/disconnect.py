"""wgmesh disconnect: remove links on both sides."""

import sys

import click

from ... import join, linkfile
from ...errors import WgmeshError
from ..common import load_node


@click.command("disconnect")
@click.argument("link", required=False)
@click.option("--force", is_flag=True, help="Remove this side even when the other node cannot be told.")
@click.option("--yes", is_flag=True, help="Do not ask before removing every link.")
def disconnect_command(link: str | None, force: bool, yes: bool) -> None:
    """Remove LINK on both sides (every link when LINK is left out)."""
    node = load_node()
    if link is None:
        links, _ = linkfile.load_all(node.paths)
        names = [l.name for l in links]
        if not names:
            click.echo("no links")
            return
        if not yes and sys.stdin.isatty():
            click.confirm(f"remove all {len(names)} links ({', '.join(names)})?", abort=True)
    else:
        names = [link]
    failures = []
    for name in names:
        try:
            join.disconnect(node, name, force)
            click.echo(f"removed {name}")
        except WgmeshError as error:
            failures.append(f"{name}: {error}")
    if failures:
        raise WgmeshError("; ".join(failures))
