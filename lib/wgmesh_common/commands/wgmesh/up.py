"""wgmesh up: start this node and its links."""

import click

from ..common import load_node


@click.command("up")
def up_command() -> None:
    """Bring the node up: loopback addresses, every link, bird, join API."""
    load_node().supervisor.start_node()
