"""wgmesh connect: join another node."""

import sys

import click

from ... import join, linkfile
from ...errors import WgmeshError
from ..common import load_node


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The join token from the command line, a file, or standard input
    (TOKEN given as -): the last two keep it out of /proc/*/cmdline, where
    every local user could read it."""
    if token_file is not None and token is not None:
        raise WgmeshError("give the token either as TOKEN or with --token-file, not both")
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as handle:
                text = handle.read(4096)
        except (OSError, UnicodeDecodeError) as error:
            raise WgmeshError(f"cannot read the token from {token_file}: {getattr(error, 'strerror', None) or error}") from None
        where = token_file
    elif token == "-":
        if sys.stdin.isatty():
            text = click.prompt("token", hide_input=True, err=True)
        else:
            text = sys.stdin.read(4096)
        where = "standard input"
    else:
        return token
    lines = text.split()
    if len(lines) != 1:
        raise WgmeshError(f"{where} must hold exactly one token (found {len(lines)} words)")
    return lines[0]



@click.command("connect")
@click.argument("url")
@click.argument("token", required=False)
@click.option("--token-file", metavar="PATH", help="Read the token from PATH instead of the command line.")
@click.option("--type", "link_type", default="wireguard", show_default=True, help="Link type.")
@click.option("--port", type=int, metavar="PORT", help="This node's listen port for the link (default: the first free one).")
@click.option("--transport", type=click.Choice(["4", "6"]), help="Underlay family (default: that of the URL's address).")
def connect_command(url: str, token: str | None, token_file: str | None, link_type: str, port: int | None,
                    transport: str | None) -> None:
    """Join the node whose join API is at URL, using its TOKEN.

    A TOKEN on the command line is visible to every local user while the
    command runs (ps, /proc/*/cmdline): give it as - to read it from
    standard input, or with --token-file PATH. Without a token the join
    goes over the mesh, which needs none."""
    token = read_token(token, token_file)
    node = load_node()
    if link_type not in linkfile.LINK_TYPES:
        raise WgmeshError(f"unknown link type {link_type!r} (known: {', '.join(linkfile.LINK_TYPES)})")
    try:
        made = join.connect(node, url, token, int(transport) if transport else None, link_type, port)
    except join.AlreadyLinked as done:
        # Connect asks for an end state, and it holds already.
        click.echo(str(done))
        return
    except join.ConnectIncomplete as error:
        _report(error.made)
        raise
    _report(made)



def _report(links: list[linkfile.Link]) -> None:
    for link in links:
        click.echo(f"connected to node {link.peer_id} over IPv{link.family}: link {link.name}, "
                   f"{link.local4} <-> {link.peer4}")
