"""Shared pieces of the command-line programs."""

import click

from ..node import Node
from ..paths import default_paths


def load_node(require_init: bool = True) -> Node:
    node = Node.load(default_paths())
    if require_init:
        node.config.require_id()
    return node


def output_option(f):
    return click.option("-o", "--output", "output", default=None, metavar="FILE",
                        help="Write the result here ('-' for stdout) instead of acting on it.")(f)


def format_option(f):
    return click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML/table output.")(f)
