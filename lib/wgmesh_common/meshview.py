"""Which nodes this node can reach, read from the routing table.

bird puts a host route to every reachable node's loopback into the kernel;
these pure functions turn a list of routes into node IDs. Mesh buildup,
VXLAN forwarding, collision checks and `wgmesh used` all start from here.
"""

import ipaddress
from collections.abc import Iterable

from . import netlink
from .addressing import MeshPlan
from .netlink import Route

RTPROT_BIRD = 12


def reachable_nodes(routes: Iterable[Route], plan: MeshPlan, own_id: int | None = None,
                    family: int = 4, bird_only: bool = True) -> set[int]:
    """IDs of nodes whose loopback has a route of its own: exactly the
    host route bird makes of it (or the /30 of lo's IPv4 address). A wider
    route that happens to cover a loopback (an aggregate, a node's block,
    a made-up /31) names no node, so an announcement that slipped past the
    kernel filter cannot invent nodes for a mesh pass to chase."""
    found = set()
    for route in routes:
        if bird_only and route.protocol != RTPROT_BIRD:
            continue
        network = route.destination
        if network.version != family:
            continue
        node_id = plan.owner_of(network.network_address) if family == 4 else _owner_of6(plan, network.network_address)
        if node_id is None:
            continue
        if family == 4:
            loopbacks = (ipaddress.IPv4Network((plan.loopback4(node_id), 32)), plan.loopback4_network(node_id))
        else:
            loopbacks = (ipaddress.IPv6Network((plan.loopback6(node_id), 128)),)
        if network in loopbacks:
            found.add(node_id)
    found.discard(own_id)
    return found


def routed_nodes(routes4: Iterable[Route], routes6: Iterable[Route], plan: MeshPlan,
                 own_id: int | None) -> dict[int, str]:
    """Every other node whose loopback has a route of its own in either
    family -> the interface that route leaves by, the IPv4 route's where
    both exist; lowest ID first (pure)."""
    found: dict[int, str] = {}
    for routes, family in ((routes6, 6), (routes4, 4)):
        for route in routes:
            for node_id in reachable_nodes([route], plan, own_id, family=family):
                found[node_id] = route.interface or "?"
    return dict(sorted(found.items()))


def reachable(plan: MeshPlan, own_id: int | None) -> dict[int, str]:
    """The nodes this node reaches now, read from the mesh's routing table:
    the one place every command (mesh pass, join checks, proximity, status,
    `wgmesh used`) learns which nodes there are."""
    routes = netlink.mesh_routes()
    return routed_nodes(routes[4], routes[6], plan, own_id)


def _owner_of6(plan: MeshPlan, address: ipaddress.IPv6Address) -> int | None:
    """The node whose /64 holds address, if any."""
    if address not in plan.subnet6:
        return None
    index = (int(address) - int(plan.subnet6.network_address)) >> 64
    return index if plan.node_id_problem(index) is None else None


def node_of_address(plan: MeshPlan, address: str) -> int | None:
    """The node whose loopback address this is (v4 or v6), if any."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 4:
        node_id = plan.owner_of(ip)
        return node_id if node_id is not None and plan.loopback4(node_id) == ip else None
    index = _owner_of6(plan, ip)
    return index if index is not None and plan.loopback6(index) == ip else None
