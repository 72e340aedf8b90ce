"""The `wgmesh` front door: a click group of the subcommands.

One module per subcommand, named after it (as every wgmesh-* program is
one module of commands/ named after it): `wgmesh connect` is
commands/wgmesh/connect.py, `wgmesh-cost-writer` commands/cost_writer.py."""

import click

from ... import __version__
from .clean import clean_command
from .connect import connect_command
from .cost import cost_command
from .disconnect import disconnect_command
from .down import down_command
from .graph import graph_command
from .init import init_command
from .mesh import mesh_command
from .migrate import migrate_command
from .notify import notify_command
from .proximity import proximity_command
from .rekey import rekey_command
from .reload import reload_command
from .set import set_command
from .status import status_command
from .token import token_command
from .up import up_command
from .used import used_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wgmesh")
def main() -> None:
    """A WireGuard full mesh that builds itself and routes with bird2 OSPF."""


for command in (init_command, token_command, connect_command, disconnect_command, status_command,
                up_command, down_command, set_command, migrate_command, mesh_command, used_command,
                clean_command, proximity_command, graph_command, cost_command, rekey_command, reload_command,
                notify_command):
    main.add_command(command)
