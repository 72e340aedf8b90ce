"""The `wgmesh` front door: a click group of the subcommands.

One module per subcommand, named after it (as every wgmesh-* program is
one module of commands/ named after it): `wgmesh connect` is
commands/wgmesh/connect.py, `wgmesh-cost-writer` commands/cost_writer.py."""

import importlib

import click

from ... import __version__
from .. import add_verbose_option

# In the order `wgmesh --help` lists them.
SUBCOMMANDS = ("init", "token", "connect", "disconnect", "status", "up", "down", "set", "migrate", "mesh", "used",
               "clean", "proximity", "graph", "cost", "rekey", "reload", "notify")


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs: every
    `wgmesh X` is a Python start-up (the mesh unit's pass, status, each
    connect), and importing all eighteen (join's cryptography, netlink's
    pyroute2, tomlkit...) doubled the start-up of the ones that need few."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module = importlib.import_module(f"{__name__}.{name}")
        # run() gave -v/--verbose to the subcommands it could see: none yet.
        return add_verbose_option(getattr(module, f"{name}_command"))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wgmesh")
def main() -> None:
    """A WireGuard full mesh that builds itself and routes with bird2 OSPF."""
