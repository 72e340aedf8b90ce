"""The L2 overlay: one VXLAN device per underlay family, and exactly one
all-zero forwarding entry per reachable node, derived from the routes.

desired_entries() is pure; reconcile() makes the kernel match it. Because
the entries come from the routing table, a node learns of a new node as
soon as OSPF routes to it, direct link or not (the seed's stale-VXLAN bug).
"""

import errno
import ipaddress
import socket
from dataclasses import dataclass

from . import meshview, netlink
from .addressing import MeshPlan
from .config import NodeConfig

ZERO_MAC = "00:00:00:00:00:00"
VXLAN_PORT = 4789


@dataclass(frozen=True)
class OverlayDevice:
    name: str
    family: int  # of the underlay (the mesh loopbacks it tunnels between)
    vni: int
    overhead: int  # bytes of VXLAN+UDP+IP header


DEVICES = (OverlayDevice("wgmvx4", 4, 251, 50), OverlayDevice("wgmvx6", 6, 252, 70))


def device_addresses(plan: MeshPlan, node_id: int, device: OverlayDevice) -> list[str]:
    if device.family == 4:
        return [f"{plan.vxlan4(node_id)}/{plan.vxlan_subnet.prefixlen}"]
    return [f"{plan.vxlan6(node_id)}/64"]


def stale_addresses(present: list[str], wanted: list[str]) -> list[str]:
    """Addresses on an overlay device that are not its own any more (those
    of an older addressing plan); the kernel's link-local stays."""
    wanted_set = {str(ipaddress.ip_interface(cidr)) for cidr in wanted}
    return [cidr for cidr in present
            if str(ipaddress.ip_interface(cidr)) not in wanted_set and not ipaddress.ip_interface(cidr).is_link_local]


def local_address(plan: MeshPlan, node_id: int, device: OverlayDevice) -> str:
    return str(plan.loopback4(node_id) if device.family == 4 else plan.loopback6(node_id))


def desired_entries(plan: MeshPlan, own_id: int, routes: list[netlink.Route], device: OverlayDevice) -> set[str]:
    """Remote VTEPs (other nodes' loopbacks) for device, from the routes."""
    nodes = meshview.reachable_nodes(routes, plan, own_id, family=device.family)
    if device.family == 4:
        return {str(plan.loopback4(n)) for n in nodes}
    return {str(plan.loopback6(n)) for n in nodes}


def ensure_device(config: NodeConfig, device: OverlayDevice) -> int:
    """Create the device if missing and give it its addresses; its index."""
    from pyroute2.netlink.exceptions import NetlinkError

    plan = MeshPlan.from_config(config)
    node_id = config.require_id()
    with netlink.handle() as ipr:
        found = ipr.link_lookup(ifname=device.name)
        if not found:
            local_key = "vxlan_local" if device.family == 4 else "vxlan_local6"
            try:
                ipr.link("add", ifname=device.name, kind="vxlan", vxlan_id=device.vni,
                         vxlan_port=VXLAN_PORT, vxlan_learning=0,
                         **{local_key: local_address(plan, node_id, device)})
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise
            found = ipr.link_lookup(ifname=device.name)
        index = found[0]
        ipr.link("set", index=index, mtu=config.mtu - device.overhead)
    wanted = device_addresses(plan, node_id, device)
    # Stale ones first: removing an IPv4 primary address removes the
    # secondaries of its subnet with it, the new one included.
    netlink.remove_addresses(device.name, stale_addresses(netlink.addresses_of(device.name), wanted))
    netlink.ensure_addresses(device.name, wanted)
    return index


def refresh_addresses(config: NodeConfig) -> list[str]:
    """Give the overlay devices that exist this node's current addresses
    (and take the old ones away); the names of the devices refreshed."""
    refreshed = []
    for device in DEVICES:
        if netlink.interface_exists(device.name):
            ensure_device(config, device)
            refreshed.append(device.name)
    return refreshed


def current_entries(index: int) -> set[str]:
    with netlink.handle() as ipr:
        return {n.get_attr("NDA_DST") for n in ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=index)
                if n.get_attr("NDA_LLADDR") == ZERO_MAC and n.get_attr("NDA_DST")}


def apply_entries(index: int, add: set[str], remove: set[str]) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    with netlink.handle() as ipr:
        for dst in sorted(add):
            try:
                ipr.fdb("append", ifindex=index, lladdr=ZERO_MAC, dst=dst)
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise
        for dst in sorted(remove):
            try:
                ipr.fdb("del", ifindex=index, lladdr=ZERO_MAC, dst=dst)
            except NetlinkError as error:
                if error.code != errno.ENOENT:
                    raise


def reconcile(config: NodeConfig, routes: dict[int, list[netlink.Route]] | None = None,
              ensure_devices: bool = True) -> dict[str, tuple[set[str], set[str]]]:
    """Make every overlay device's entries equal the reachable nodes (from
    routes, per family, when the caller has read them already). Devices are
    made if missing or down; with ensure_devices, those that exist get
    their settings and addresses again.
    Returns, per device, the entries added and removed."""
    plan = MeshPlan.from_config(config)
    routes = routes or netlink.mesh_routes()
    changes = {}
    for device in DEVICES:
        index = netlink.interface_index(device.name)
        if index is None or ensure_devices or not netlink.interface_is_up(device.name):
            index = ensure_device(config, device)
        wanted = desired_entries(plan, config.require_id(), routes[device.family], device)
        have = current_entries(index)
        add, remove = wanted - have, have - wanted
        if add or remove:
            apply_entries(index, add, remove)
        changes[device.name] = (add, remove)
    return changes


def remove_devices() -> None:
    for device in DEVICES:
        netlink.delete_interface(device.name)
