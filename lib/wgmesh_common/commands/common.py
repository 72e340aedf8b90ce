"""Shared pieces of the command-line programs."""

from ..node import Node
from ..paths import default_paths


def load_node() -> Node:
    """This node's files; an error naming `wgmesh init` where there are none."""
    node = Node.load(default_paths())
    node.config.require_id()
    return node
