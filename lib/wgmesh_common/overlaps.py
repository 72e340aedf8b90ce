"""Overlaps between the mesh's address ranges and networks already on the host.

A VPS with a private network in 10.0.0.0/24 would otherwise get link
addresses inside it without a word. overlap_warnings() is pure: the host's
addresses and routes in, one line per overlap out. It only warns: the
operator may know the overlap is harmless, and nothing here may keep a node
from booting, so the readers are called by `wgmesh init` and `wgmesh status`
alone.
"""

import ipaddress
from dataclasses import dataclass

from . import netlink
from .addressing import MeshPlan
from .meshview import RTPROT_BIRD

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The mesh's own interfaces (links wgm*, overlays wgmvx*): what is on them is the mesh.
MESH_INTERFACE_PREFIX = "wgm"


@dataclass(frozen=True)
class HostNetwork:
    kind: str  # "address" or "route"
    text: str  # as `ip` shows it: 10.0.0.5/24, 10.0.0.0/24
    interface: str | None
    protocol: int | None = None  # of a route

    @property
    def network(self) -> Network:
        return ipaddress.ip_interface(self.text).network


@dataclass(frozen=True)
class MeshRange:
    name: str
    network: Network
    setting: str  # the `wgmesh set` arguments that move it


def mesh_ranges(plan: MeshPlan) -> list[MeshRange]:
    return [
        # The VXLAN subnet lies inside the mesh subnet, so they move together.
        MeshRange("the mesh's IPv4 subnet", plan.subnet, "mesh.subnet NETWORK mesh.vxlan_subnet NETWORK"),
        MeshRange("the mesh's IPv6 prefix", plan.subnet6, "mesh.subnet6 PREFIX"),
        MeshRange("the VXLAN IPv4 subnet", plan.vxlan_subnet, "mesh.vxlan_subnet NETWORK"),
        # Its /64 sits at the VXLAN subnet's place in the mesh subnet.
        MeshRange("the VXLAN IPv6 subnet", plan.vxlan6_network(), "mesh.vxlan_subnet NETWORK"),
    ]


def is_the_mesh_own(plan: MeshPlan, own_id: int | None, found: HostNetwork) -> bool:
    """The mesh's own addresses and routes: on its interfaces, made by bird,
    or the node's loopback addresses on lo."""
    if found.interface and found.interface.startswith(MESH_INTERFACE_PREFIX):
        return True
    if found.kind == "route" and found.protocol == RTPROT_BIRD:
        return True
    if found.interface == "lo" and own_id is not None:
        own = (plan.loopback4_network(own_id), ipaddress.ip_network(plan.loopback6(own_id)))
        return any(found.network.subnet_of(n) for n in own if n.version == found.network.version)
    return False


def overlap_warnings(plan: MeshPlan, own_id: int | None, host: list[HostNetwork]) -> list[str]:
    """One line per overlap between a mesh range and a host network (an
    address, or a route other than the default); the mesh's own never count,
    and a route to an address's own network is that address's overlap."""
    lines = []
    seen: set[tuple[str, Network]] = set()
    for found in host:
        network = found.network
        if network.prefixlen == 0 or network.is_link_local or is_the_mesh_own(plan, own_id, found):
            continue
        for mesh_range in mesh_ranges(plan):
            if mesh_range.network.version != network.version or not mesh_range.network.overlaps(network):
                continue
            if (mesh_range.name, network) in seen:
                continue
            seen.add((mesh_range.name, network))
            where = f" on {found.interface}" if found.interface else ""
            lines.append(f"{mesh_range.name} {mesh_range.network} overlaps {network} ({found.kind} {found.text}{where}) "
                         f"already on this host: 'wgmesh set {mesh_range.setting}' avoids it")
    return lines


def host_networks() -> list[HostNetwork]:
    """The host's addresses (first, so an address names its overlap), then
    the routes of its main table."""
    found = [HostNetwork("address", cidr, interface) for cidr, interface in netlink.all_addresses()]
    for family in (4, 6):
        found += [HostNetwork("route", str(r.destination), r.interface, r.protocol)
                  for r in netlink.routes(family, netlink.MAIN_TABLE)]
    return found


def host_overlaps(plan: MeshPlan, own_id: int | None) -> list[str]:
    """overlap_warnings() for this host; [] when the host cannot be read,
    since a warning must never be what stops init or status."""
    try:
        networks = host_networks()
    except Exception:  # noqa: BLE001 - see above
        return []
    return overlap_warnings(plan, own_id, networks)
