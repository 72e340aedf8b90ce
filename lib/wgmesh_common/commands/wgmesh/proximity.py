"""wgmesh proximity: the nodes by underlay distance, and a cutoff."""

import click

from ... import config as node_config
from ... import join, linkfile, proximity
from ...errors import WgmeshError
from ..common import load_node


@click.command("proximity")
@click.argument("cutoff", type=int, required=False)
def proximity_command(cutoff: int | None) -> None:
    """List nodes by underlay latency; with CUTOFF (ms) keep no links to
    nodes farther than that (0 removes the limit)."""
    node = load_node()
    distances = proximity.measure(node)
    proximity.save(node, distances)
    for d in distances:
        rtt = f"{d.rtt:.1f} ms" if d.rtt is not None else "no answer"
        click.echo(f"{d.peer_id}\t{d.address or '-'}\t{rtt}")
    if cutoff is None:
        return
    if cutoff < 0:
        raise WgmeshError("CUTOFF must be 0 (no limit) or a positive number of milliseconds")
    node_config.write_settings(node.paths.config_file, {("node", "proximity_cutoff"): cutoff})
    far = proximity.beyond({d.peer_id: d for d in distances}, cutoff)
    links, _ = linkfile.load_all(node.paths)
    for link in links:
        if link.peer_id in far:
            join.disconnect(node, link.name, force=True)
            click.echo(f"removed {link.name}: node {link.peer_id} is beyond {cutoff} ms")
    # A wider limit may let nodes be linked that were not: a pass now, not
    # at the mesh timer's next tick (a safety net of 30 s).
    if not node.config.is_client:
        node.supervisor.start_mesh_pass()
