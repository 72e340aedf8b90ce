"""Which nodes this node can reach, read from the routing table.

bird puts a host route to every reachable node's loopback into the kernel;
these pure functions turn a list of routes into node IDs. Mesh buildup,
VXLAN forwarding, collision checks and `wgmesh used` all start from here.
"""

import ipaddress
from typing import Iterable

from .addressing import MeshPlan
from .netlink import Route

RTPROT_BIRD = 12


def reachable_nodes(routes: Iterable[Route], plan: MeshPlan, own_id: int | None = None,
                    family: int = 4, bird_only: bool = True) -> set[int]:
    """IDs of nodes whose loopback has a route of its own (not a default or
    an aggregate: the route must be at least as specific as a node block)."""
    found = set()
    for route in routes:
        if bird_only and route.protocol != RTPROT_BIRD:
            continue
        network = route.destination
        if network.version != family:
            continue
        if family == 4:
            if network.prefixlen < plan.node_prefix or not network.subnet_of(plan.subnet):
                continue
            node_id = plan.owner_of(network.network_address)
            if node_id is not None and plan.loopback4(node_id) in network:
                found.add(node_id)
        else:
            if network.prefixlen < 64 or not network.subnet_of(plan.subnet6):
                continue
            index = (int(network.network_address) - int(plan.subnet6.network_address)) >> 64
            if 0 <= index <= 254 and plan.node_id_problem(index) is None and plan.loopback6(index) in network:
                found.add(index)
    found.discard(own_id)
    return found


def node_of_address(plan: MeshPlan, address: str) -> int | None:
    """The node whose loopback address this is (v4 or v6), if any."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 4:
        node_id = plan.owner_of(ip)
        return node_id if node_id is not None and plan.loopback4(node_id) == ip else None
    if ip not in plan.subnet6:
        return None
    index = (int(ip) - int(plan.subnet6.network_address)) >> 64
    if 0 <= index <= 254 and plan.node_id_problem(index) is None and plan.loopback6(index) == ip:
        return index
    return None
