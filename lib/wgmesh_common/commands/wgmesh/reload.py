"""wgmesh reload: make every running link what its file says."""

import click

from ... import linkfile
from ...errors import WgmeshError
from ..common import load_node


@click.command("reload")
def reload_command() -> None:
    """Apply every link file to its running link (keys, endpoints, MTU,
    keepalive) without restarting any, and re-render bird's config."""
    node = load_node()
    failures = reload_links(node, [link.name for link in linkfile.load_all(node.paths)[0]])
    node.supervisor.links_changed()
    if failures:
        raise WgmeshError("; ".join(failures))



def reload_links(node, names: list[str]) -> list[str]:
    """Reload each link; the problems, one per link that failed."""
    failures = []
    for name in names:
        try:
            node.supervisor.reload_link(name)
            click.echo(f"reloaded {name}")
        except WgmeshError as error:
            failures.append(f"{name}: {error}")
    return failures
