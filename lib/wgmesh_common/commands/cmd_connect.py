"""wgmesh connect / disconnect: make and remove links with other nodes."""

import sys

import click

from .. import join, linkfile, rekey
from ..errors import WgmeshError
from .common import load_node


@click.command("connect")
@click.argument("url")
@click.argument("token", required=False)
@click.option("--type", "link_type", default="wireguard", show_default=True, help="Link type.")
@click.option("--port", type=int, metavar="PORT", help="This node's listen port for the link (default: the first free one).")
@click.option("--transport", type=click.Choice(["4", "6"]), help="Underlay family (default: that of the URL's address).")
def connect_command(url: str, token: str | None, link_type: str, port: int | None, transport: str | None) -> None:
    """Join the node whose join API is at URL, using its TOKEN."""
    node = load_node()
    if link_type not in linkfile.LINK_TYPES:
        raise WgmeshError(f"unknown link type {link_type!r} (known: {', '.join(linkfile.LINK_TYPES)})")
    for link in join.connect(node, url, token, int(transport) if transport else None, link_type, port):
        click.echo(f"connected to node {link.peer_id} over IPv{link.family}: link {link.name}, "
                   f"{link.local4} <-> {link.peer4}")


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


@click.command("rekey")
@click.argument("link")
def rekey_command(link: str) -> None:
    """Give this side of LINK a new WireGuard key, agreed with the peer.

    The peer takes the new public key over the join API (signed with the
    link's current key) and both sides apply it without restarting the
    link; its derived preshared key changes with it."""
    rekey.rekey(load_node(), link)
    click.echo(f"{link}: new key in use")
