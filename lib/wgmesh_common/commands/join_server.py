"""wgmesh-join-server: the HTTP API other nodes join through."""

import click

from .. import joinserver, log
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Serve POST /connectivity, POST /connect, PATCH /update and
    POST /disconnect on this node's mesh address (all addresses with
    api.public), or on the sockets systemd passes."""
    log.set_stderr_threshold("info")
    joinserver.serve(load_node())
