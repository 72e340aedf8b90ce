"""wgmesh rekey: a new key for this node's side of a link."""

import click

from ... import rekey
from ..common import load_node


@click.command("rekey")
@click.argument("link")
def rekey_command(link: str) -> None:
    """Give this side of LINK a new WireGuard key, agreed with the peer.

    The peer takes the new public key over the join API (signed with the
    link's current key) and both sides apply it without restarting the
    link; its derived preshared key changes with it."""
    rekey.rekey(load_node(), link)
    click.echo(f"{link}: new key in use")
