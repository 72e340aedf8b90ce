"""wgmesh used: the node IDs in use in the mesh."""

import click

from ... import mesh, meshview
from ..common import load_node


@click.command("used")
def used_command() -> None:
    """List the node IDs in use in the mesh (as this node sees it)."""
    node = load_node()
    ids = {node.node_id}
    ids |= set(meshview.reachable(node.plan, node.node_id))
    ids |= mesh.linked_peers(node)
    for node_id in sorted(ids):
        kind = "client" if node.plan.is_client(node_id) else "node"
        me = "  (this node)" if node_id == node.node_id else ""
        click.echo(f"{node_id}\t{kind}\t{node.plan.loopback4(node_id)}{me}")
