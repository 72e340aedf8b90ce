"""wgmesh down: stop this node and its links."""

import click

from ..common import load_node


@click.command("down")
def down_command() -> None:
    """Take the node down: every link, bird and the join API stop.
    Link files stay, so 'wgmesh up' (or a reboot) restores the same mesh."""
    load_node().supervisor.stop_node()
