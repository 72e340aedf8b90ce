"""Overlaps between the mesh's ranges and the host's own networks."""

import pytest

from wgmesh_common.addressing import MeshPlan
from wgmesh_common.overlaps import HostNetwork, overlap_warnings

BIRD, KERNEL, BOOT = 12, 2, 3


def address(text, interface="eth1"):
    return HostNetwork("address", text, interface)


def route(text, interface="eth1", protocol=BOOT):
    return HostNetwork("route", text, interface, protocol)


@pytest.mark.parametrize("host, expected", [
    # A VPS's private network, as an address and the kernel's route to it: one line.
    ([address("10.0.0.5/24"), route("10.0.0.0/24", protocol=KERNEL)],
     [("the mesh's IPv4 subnet 10.0.0.0/16 overlaps 10.0.0.0/24 (address 10.0.0.5/24 on eth1) already on this host: "
      "'wgmesh set mesh.subnet NETWORK mesh.vxlan_subnet NETWORK' avoids it")]),
    # A route alone (a network behind a gateway), wider than the mesh.
    ([route("10.0.0.0/8")], [("the mesh's IPv4 subnet 10.0.0.0/16 overlaps 10.0.0.0/8 (route 10.0.0.0/8 on eth1) "
                            "already on this host: 'wgmesh set mesh.subnet NETWORK mesh.vxlan_subnet NETWORK' avoids it"),
                            ("the VXLAN IPv4 subnet 10.0.251.0/24 overlaps 10.0.0.0/8 (route 10.0.0.0/8 on eth1) "
                            "already on this host: 'wgmesh set mesh.vxlan_subnet NETWORK' avoids it")]),
    # Inside the VXLAN subnet: the mesh subnet and the VXLAN subnet, each with its setting.
    ([address("10.0.251.9/28")],
     [("the mesh's IPv4 subnet 10.0.0.0/16 overlaps 10.0.251.0/28 (address 10.0.251.9/28 on eth1) already on this "
      "host: 'wgmesh set mesh.subnet NETWORK mesh.vxlan_subnet NETWORK' avoids it"),
      ("the VXLAN IPv4 subnet 10.0.251.0/24 overlaps 10.0.251.0/28 (address 10.0.251.9/28 on eth1) already on this "
      "host: 'wgmesh set mesh.vxlan_subnet NETWORK' avoids it")]),
    ([address("fd10:0:0:5::7/64")],
     [("the mesh's IPv6 prefix fd10::/48 overlaps fd10:0:0:5::/64 (address fd10:0:0:5::7/64 on eth1) already on this "
      "host: 'wgmesh set mesh.subnet6 PREFIX' avoids it")]),
    ([route("fd10:0:0:fb::/64", "eth2")],
     [("the mesh's IPv6 prefix fd10::/48 overlaps fd10:0:0:fb::/64 (route fd10:0:0:fb::/64 on eth2) already on this "
      "host: 'wgmesh set mesh.subnet6 PREFIX' avoids it"),
      ("the VXLAN IPv6 subnet fd10:0:0:fb::/64 overlaps fd10:0:0:fb::/64 (route fd10:0:0:fb::/64 on eth2) already on "
      "this host: 'wgmesh set mesh.vxlan_subnet NETWORK' avoids it")]),
    # Not overlaps: the default route, other networks, link-local, loopback.
    ([route("0.0.0.0/0"), route("::/0"), address("192.168.1.5/24"), address("fe80::1/64"),
      address("127.0.0.1/8", "lo"), address("fd11::1/64")], []),
    # The mesh's own: its loopbacks on lo, anything on wgm*/wgmvx*, bird's routes.
    ([address("10.0.2.1/30", "lo"), address("fd10:0:0:2::1/128", "lo"), address("10.0.2.4/31", "wgm4"),
      address("fd10:0:0:2::4/127", "wgm4v6"), address("10.0.251.2/24", "wgmvx4"), address("fd10:0:0:fb::2/64", "wgmvx6"),
      route("10.0.4.1/32", "wgm4", BIRD), route("10.0.251.0/24", "wgmvx4", KERNEL),
      route("10.0.6.0/23", None, BIRD)], []),
])
def test_overlap_warnings(host, expected):
    assert overlap_warnings(MeshPlan.default(), 2, host) == expected


def test_another_node_loopback_on_lo_is_not_this_node_own():
    lines = overlap_warnings(MeshPlan.default(), 2, [address("10.0.4.1/30", "lo")])
    assert len(lines) == 1 and "address 10.0.4.1/30 on lo" in lines[0]
