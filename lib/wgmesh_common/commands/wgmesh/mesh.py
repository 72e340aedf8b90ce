"""wgmesh mesh: link with every routable node not linked yet."""

import sys

import click

from ... import mesh
from ..common import load_node


@click.command("mesh")
def mesh_command() -> None:
    """Connect to every node this one routes to but has no link with.
    One line per link made and per node it could not link with (then the
    exit status is 1)."""
    report = mesh.build(load_node())
    for line in report.lines():
        click.echo(line)
    if report.exit_status:
        sys.exit(report.exit_status)
