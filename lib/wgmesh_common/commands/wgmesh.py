"""The `wgmesh` front door: a click group of the subcommands."""

import click

from .. import __version__
from .cmd_config import migrate_command, set_command
from .cmd_connect import connect_command, disconnect_command, rekey_command
from .cmd_cost import cost_command
from .cmd_init import init_command
from .cmd_mesh import clean_command, graph_command, mesh_command, proximity_command, used_command
from .cmd_notify import notify_command
from .cmd_status import down_command, reload_command, status_command, up_command
from .cmd_token import token_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wgmesh")
def main() -> None:
    """A WireGuard full mesh that builds itself and routes with bird2 OSPF."""


for command in (init_command, token_command, connect_command, disconnect_command, status_command,
                up_command, down_command, set_command, migrate_command, mesh_command, used_command,
                clean_command, proximity_command, graph_command, cost_command, rekey_command, reload_command,
                notify_command):
    main.add_command(command)
