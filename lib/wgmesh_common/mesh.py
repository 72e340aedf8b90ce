"""Automatic mesh buildup: connect to every node without a direct link.

The race is settled by a rule, not by timing: between two nodes it is the
one with the higher ID that connects (a client of the lower-ID server).
So two nodes meshing at the same moment never both start the same link;
the serving side's per-peer reservation handles every other overlap.
"""

from concurrent.futures import ThreadPoolExecutor

from . import join, linkfile, log, meshview, netlink
from .errors import WgmeshError
from .node import Node


PARALLEL_JOINS = 8


def candidates(own_id: int, reachable: set[int], linked: set[int], is_client: bool, plan,
               too_far: set[int] = frozenset()) -> list[int]:
    """Nodes this one should connect to now, lowest ID first (pure)."""
    if is_client:
        return []
    return sorted(peer for peer in reachable
                  if peer < own_id and peer not in linked and not plan.is_client(peer) and peer not in too_far)


def linked_peers(node: Node) -> set[int]:
    links, _ = linkfile.load_all(node.paths)
    return {link.peer_id for link in links}


def too_far(node: Node, candidates: list[int]) -> set[int]:
    from . import proximity

    return proximity.excluded(node, set(candidates))


def build(node: Node) -> list[linkfile.Link]:
    """One mesh pass: connect to each candidate; returns the links made."""
    own_id = node.node_id
    reachable = meshview.reachable_nodes(netlink.mesh_routes(4), node.plan, own_id)
    reachable |= meshview.reachable_nodes(netlink.mesh_routes(6), node.plan, own_id, family=6)
    linked, is_client = linked_peers(node), node.config.is_client
    wanted = candidates(own_id, reachable, linked, is_client, node.plan)
    # Only the candidates need a distance, so the cutoff is applied second.
    peers = candidates(own_id, reachable, linked, is_client, node.plan, too_far(node, wanted)) if wanted else []
    if not peers:
        return []
    # Every peer at once: a join waits mostly on the other node and on the
    # service manager, and a node joining a mesh of N has N-1 of them to do.
    # Joins to different peers share nothing but the allocator, which locks.
    with ThreadPoolExecutor(max_workers=min(PARALLEL_JOINS, len(peers))) as pool:
        results = list(pool.map(lambda peer: _link_with(node, peer), peers))
    return [link for links in results for link in links]


def _link_with(node: Node, peer_id: int) -> list[linkfile.Link]:
    try:
        links = join.connect(node, node.api_url_of(peer_id), None)
    except WgmeshError as error:
        log.warning(f"mesh: could not connect to node {peer_id}: {error}", peer=peer_id)
        return []
    log.event("mesh-link", f"mesh: linked with node {peer_id}", peer=peer_id)
    return links
