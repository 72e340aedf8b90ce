"""wgmesh-cost-writer: link files (and, later, probes) -> bird config."""

import sys

import click

from .. import linkfile, routing
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dry-run", is_flag=True, help="Print the bird config that would be written; change nothing.")
def main(dry_run: bool) -> None:
    """Render bird's config from the links and reconfigure bird if it changed."""
    node = load_node()
    if dry_run:
        links, _ = linkfile.load_all(node.paths)
        sys.stdout.write(routing.render_config(node.config, routing.base_interfaces(node.config, links)))
        return
    routing.apply(node.paths, node.config)
