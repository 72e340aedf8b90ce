"""The addressing plan: which addresses a node and its links get."""

import ipaddress

import pytest

from wgmesh_common import meshview
from wgmesh_common.addressing import MeshPlan, link_local6
from wgmesh_common.errors import ConfigError

A4 = ipaddress.IPv4Address
A6 = ipaddress.IPv6Address


def plan24() -> MeshPlan:
    return MeshPlan(ipaddress.IPv4Network("10.0.0.0/16"), 24, ipaddress.IPv6Network("fd10::/48"),
                    ipaddress.IPv4Network("10.0.251.0/24"))


@pytest.mark.parametrize("node_id, block, loopback, loopback6, lo_net", [
    (0, "10.0.0.0/23", "10.0.0.1", "fd10::1", "10.0.0.0/30"),
    (2, "10.0.2.0/23", "10.0.2.1", "fd10:0:0:2::1", "10.0.2.0/30"),
    (100, "10.0.100.0/23", "10.0.100.1", "fd10:0:0:64::1", "10.0.100.0/30"),
    (254, "10.0.254.0/23", "10.0.254.1", "fd10:0:0:fe::1", "10.0.254.0/30"),
])
def test_default_plan_node_addresses(plan, node_id, block, loopback, loopback6, lo_net):
    assert plan.node_block(node_id) == ipaddress.IPv4Network(block)
    assert plan.loopback4(node_id) == A4(loopback)
    assert plan.loopback6(node_id) == A6(loopback6)
    assert plan.loopback4_network(node_id) == ipaddress.IPv4Network(lo_net)
    assert plan.node_block6(node_id) == ipaddress.IPv6Network(f"{loopback6[:-1]}/64")


def test_default_plan_steps_ids_by_two_with_23_blocks(plan):
    assert plan.node_prefix == 23
    assert plan.id_step == 2
    assert plan.block_size == 512


@pytest.mark.parametrize("server_id, offset, s4, c4, s6, c6", [
    (0, 4, "10.0.0.4", "10.0.0.5", "fd10::4", "fd10::5"),
    (2, 4, "10.0.2.4", "10.0.2.5", "fd10:0:0:2::4", "fd10:0:0:2::5"),
    (2, 6, "10.0.2.6", "10.0.2.7", "fd10:0:0:2::6", "fd10:0:0:2::7"),
    # The second /24 of the /23 is used too, and the /127 stays at the same offset.
    (2, 256, "10.0.3.0", "10.0.3.1", "fd10:0:0:2::100", "fd10:0:0:2::101"),
    (2, 510, "10.0.3.254", "10.0.3.255", "fd10:0:0:2::1fe", "fd10:0:0:2::1ff"),
])
def test_link_addresses_are_a_31_and_a_127_at_the_same_offset(plan, server_id, offset, s4, c4, s6, c6):
    link = plan.link_addresses(server_id, offset)
    assert (link.listener4, link.dialer4, link.listener6, link.dialer6) == (A4(s4), A4(c4), A6(s6), A6(c6))
    assert link.offset == offset
    # Server gets the even address, the client the odd one.
    assert int(link.listener4) % 2 == 0 and int(link.dialer4) == int(link.listener4) + 1
    assert ipaddress.IPv4Network(f"{link.listener4}/31").broadcast_address == link.dialer4


def test_link_roles_pick_each_end(plan):
    link = plan.link_addresses(2, 8)
    assert link.local4("listener") == link.peer4("dialer") == A4("10.0.2.8")
    assert link.local4("dialer") == link.peer4("listener") == A4("10.0.2.9")
    assert link.local6("listener") == link.peer6("dialer") == A6("fd10:0:0:2::8")
    assert link.local6("dialer") == link.peer6("listener") == A6("fd10:0:0:2::9")


def test_link_offsets_start_after_the_loopback_and_stay_in_the_block(plan):
    offsets = list(plan.link_offsets())
    assert offsets[0] == 4
    assert offsets[-1] == 510
    assert all(o % 2 == 0 for o in offsets)
    assert len(offsets) == 254
    for offset in (offsets[0], offsets[-1]):
        link = plan.link_addresses(8, offset)
        assert link.listener4 in plan.node_block(8) and link.dialer4 in plan.node_block(8)
        assert link.listener4 not in plan.loopback4_network(8)


@pytest.mark.parametrize("offset", [0, 2, 3, 5, 512, -2])
def test_link_addresses_refuse_offsets_that_are_not_link_31s(plan, offset):
    with pytest.raises(ValueError, match="offset"):
        plan.link_addresses(0, offset)


def test_first_links_of_different_nodes_never_collide(plan):
    seen = set()
    for node_id in plan.valid_node_ids():
        for offset in (4, 510):
            link = plan.link_addresses(node_id, offset)
            assert not {link.listener4, link.dialer4, link.listener6, link.dialer6} & seen
            seen |= {link.listener4, link.dialer4, link.listener6, link.dialer6}


@pytest.mark.parametrize("node_id, client", [(0, False), (198, False), (200, True), (254, True)])
def test_ids_from_200_are_clients(plan, node_id, client):
    assert plan.is_client(node_id) is client


def test_valid_ids_of_the_default_plan(plan):
    ids = plan.valid_node_ids()
    assert ids == [i for i in range(0, 255, 2) if i != 250]


@pytest.mark.parametrize("node_id, expected", [
    (0, None),
    (2, None),
    (248, None),
    (252, None),
    (254, None),
    (-1, "-1 is out of range (0-254)"),
    (255, "255 is out of range (0-254)"),
    (300, "300 is out of range (0-254)"),
    (3, "3 is not a multiple of 2: with /23 node blocks IDs step by 2"),
    (201, "201 is not a multiple of 2: with /23 node blocks IDs step by 2"),
    (250, "250 would overlap the VXLAN subnet 10.0.251.0/24"),
])
def test_node_id_problem_messages(plan, node_id, expected):
    assert plan.node_id_problem(node_id) == expected


def test_check_node_id_raises_config_error_naming_the_key(plan):
    with pytest.raises(ConfigError, match=r"^x.toml: node.id 250 would overlap the VXLAN subnet"):
        plan.check_node_id(250, "x.toml")
    plan.check_node_id(252, "x.toml")


def test_24_node_blocks_step_by_one():
    plan = plan24()
    assert plan.id_step == 1
    assert plan.node_id_problem(3) is None
    assert plan.node_block(3) == ipaddress.IPv4Network("10.0.3.0/24")
    assert plan.loopback4(3) == A4("10.0.3.1")
    assert plan.loopback6(3) == A6("fd10:0:0:3::1")
    assert plan.link_addresses(3, 4).listener4 == A4("10.0.3.4")
    assert list(plan.link_offsets())[-1] == 254
    # With /24 blocks 250 is fine, and 251 is the VXLAN /24 itself.
    assert plan.node_id_problem(250) is None
    assert plan.node_id_problem(251) == "251 would overlap the VXLAN subnet 10.0.251.0/24"
    assert plan.owner_of(A4("10.0.3.200")) == 3


def test_22_node_blocks_step_by_four():
    plan = MeshPlan(ipaddress.IPv4Network("10.0.0.0/16"), 22, ipaddress.IPv6Network("fd10::/48"),
                    ipaddress.IPv4Network("10.0.251.0/24"))
    assert plan.id_step == 4
    assert plan.node_id_problem(2) == "2 is not a multiple of 4: with /22 node blocks IDs step by 4"
    assert plan.node_id_problem(248) == "248 would overlap the VXLAN subnet 10.0.251.0/24"
    assert plan.node_block(4) == ipaddress.IPv4Network("10.0.4.0/22")


def test_node_that_does_not_fit_the_subnet():
    plan = MeshPlan(ipaddress.IPv4Network("10.0.0.0/20"), 23, ipaddress.IPv6Network("fd10::/48"),
                    ipaddress.IPv4Network("10.0.15.0/24"))
    assert plan.node_id_problem(12) is None
    assert plan.node_id_problem(16) == "16 does not fit in mesh subnet 10.0.0.0/20"


@pytest.mark.parametrize("address, owner", [
    ("10.0.0.1", 0),
    ("10.0.2.5", 2),
    ("10.0.3.77", 2),  # the upper /24 of node 2's /23
    ("10.0.254.1", 254),
    ("10.0.251.3", None),  # VXLAN, nobody's block
    ("10.0.250.1", None),  # the block 250 would have, which is not a node
    ("10.1.0.1", None),
    ("192.0.2.1", None),
])
def test_owner_of(plan, address, owner):
    assert plan.owner_of(A4(address)) == owner


def test_owner_of_is_the_inverse_of_the_link_plan(plan):
    for node_id in (0, 2, 124, 254):
        link = plan.link_addresses(node_id, 300)
        assert plan.owner_of(link.listener4) == plan.owner_of(link.dialer4) == node_id


@pytest.mark.parametrize("address4, expected", [
    ("10.0.2.4", "fe80::a00:204"),
    ("10.0.2.5", "fe80::a00:205"),
    ("10.0.3.255", "fe80::a00:3ff"),
])
def test_link_local6(address4, expected):
    result = link_local6(A4(address4))
    assert result == A6(expected)
    assert result.is_link_local


def test_link_local6_differs_between_the_two_ends(plan):
    link = plan.link_addresses(2, 4)
    assert link_local6(link.listener4) != link_local6(link.dialer4)


def test_vxlan_addresses(plan):
    assert plan.vxlan6_network() == ipaddress.IPv6Network("fd10:0:0:fb::/64")


@pytest.mark.parametrize("subnet, prefix, subnet6, vxlan, message", [
    ("10.0.0.0/24", 23, "fd10::/48", "10.0.0.0/24", "mesh.subnet 10.0.0.0/24 is smaller than one node block (/23)"),
    ("10.0.0.0/16", 23, "fd10::/60", "10.0.251.0/24", "mesh.subnet6 fd10::/60 must be a /56 or larger"),
    ("10.0.0.0/16", 23, "fd10::/48", "10.1.251.0/24", "mesh.vxlan_subnet 10.1.251.0/24 must lie inside mesh.subnet"),
    ("10.0.0.0/16", 23, "fd10::/48", "10.0.251.0/25", "mesh.vxlan_subnet 10.0.251.0/25 must be a /24 or larger"),
])
def test_check_layout(subnet, prefix, subnet6, vxlan, message):
    plan = MeshPlan(ipaddress.IPv4Network(subnet), prefix, ipaddress.IPv6Network(subnet6), ipaddress.IPv4Network(vxlan))
    with pytest.raises(ConfigError) as caught:
        plan.check_layout("f.toml")
    assert str(caught.value).startswith("f.toml: " + message)


def test_default_layout_is_accepted(plan):
    plan.check_layout()


LAYOUTS = [
    # (mesh subnet, node prefix, vxlan subnet): the default, /24 and /22 node blocks,
    # a VXLAN /24 at other places (one where no node ID gives way to it) and a VXLAN /23.
    ("10.0.0.0/16", 23, "10.0.251.0/24"),
    ("10.0.0.0/16", 24, "10.0.251.0/24"),
    ("10.0.0.0/16", 22, "10.0.251.0/24"),
    ("10.0.0.0/16", 24, "10.0.255.0/24"),
    ("10.0.0.0/16", 24, "10.0.0.0/24"),
    ("10.0.0.0/16", 24, "10.0.250.0/23"),
    ("10.8.0.0/17", 23, "10.8.100.0/24"),
    # Crowded: /24 blocks and the overlay in a block beyond ID 254, so IDs 1-254 hold every host part.
    ("10.0.0.0/15", 24, "10.1.0.0/24"),
    ("10.0.0.0/20", 24, "10.0.15.0/24"),
]
CROWDED = [("10.0.0.0/16", 24, "10.0.255.0/24"), ("10.0.0.0/15", 24, "10.1.0.0/24")]


def layout_plan(subnet: str, node_prefix: int, vxlan: str) -> MeshPlan:
    return MeshPlan(ipaddress.IPv4Network(subnet), node_prefix, ipaddress.IPv6Network("fd10::/48"),
                    ipaddress.IPv4Network(vxlan))


def reserved6(address: ipaddress.IPv6Address, network: ipaddress.IPv6Network) -> bool:
    """The subnet-router anycast (host part 0) or one of the 128 reserved
    subnet anycast addresses at the top of a /64 (RFC 2526)."""
    host = int(address) - int(network.network_address)
    return host == 0 or host >= (1 << 64) - 128


def layout_id(layout) -> str:
    return "-".join(map(str, layout))


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_every_valid_id_has_ordinary_distinct_overlay_addresses(layout):
    plan = layout_plan(*layout)
    ids = plan.valid_node_ids()
    v4 = [plan.vxlan4(i) for i in ids]
    v6 = [plan.vxlan6(i) for i in ids]
    network4, network6 = plan.vxlan_subnet, plan.vxlan6_network()
    for node_id, a4, a6 in zip(ids, v4, v6):
        assert a4 in network4 and a4 != network4.broadcast_address, (node_id, a4)
        assert a6 in network6 and not reserved6(a6, network6), (node_id, a6)
        if layout in CROWDED and node_id == 0:
            continue  # the module's doc: the one layout with no ordinary IPv4 host part left for node 0
        assert a4 != network4.network_address, (node_id, a4)
        assert plan.overlay_problem(node_id) is None
        # Both overlays give a node the same host part.
        assert int(a4) - int(network4.network_address) == int(a6) - int(network6.network_address)
    assert len(set(v4)) == len(ids) and len(set(v6)) == len(ids)


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_every_id_of_a_layout_loads_and_maps_back_to_its_node(layout):
    plan = layout_plan(*layout)
    ids = plan.valid_node_ids()
    # Node 0 is valid wherever its block is free: an installed node 0 always loads.
    assert (0 in ids) == (not plan.node_block(0).overlaps(plan.vxlan_subnet)) and max(ids) <= 254
    for node_id in ids:
        plan.check_node_id(node_id)
        assert plan.owner_of(plan.loopback4(node_id)) == node_id
        assert meshview.node_of_address(plan, str(plan.loopback4(node_id))) == node_id
        assert meshview.node_of_address(plan, str(plan.loopback6(node_id))) == node_id
        # Overlay addresses belong to no node's block: forwarding entries name loopbacks.
        assert plan.owner_of(plan.vxlan4(node_id)) is None
        assert meshview.node_of_address(plan, str(plan.vxlan6(node_id))) is None


def test_the_default_overlay_addresses_are_the_id_except_node_0(plan):
    assert plan.vxlan4(0) == A4("10.0.251.1") and plan.vxlan6(0) == A6("fd10:0:0:fb::1")
    assert plan.vxlan4(2) == A4("10.0.251.2") and plan.vxlan6(2) == A6("fd10:0:0:fb::2")
    # The top ID keeps the address below the broadcast.
    assert plan.vxlan4(254) == A4("10.0.251.254") and plan.vxlan6(254) == A6("fd10:0:0:fb::fe")
    assert plan.valid_node_ids() == [i for i in range(0, 255, 2) if i != 250]


def test_with_24_blocks_node_0_takes_the_host_part_of_the_id_the_overlay_displaced():
    plan = layout_plan("10.0.0.0/16", 24, "10.0.251.0/24")
    assert 251 not in plan.valid_node_ids()
    assert plan.vxlan4(0) == A4("10.0.251.251")


@pytest.mark.parametrize("layout", CROWDED, ids=layout_id)
def test_node_0_of_a_crowded_layout_keeps_loading_with_a_warning(layout):
    plan = layout_plan(*layout)
    assert plan.valid_node_ids() == list(range(255))
    # IPv6 has room above the IDs; IPv4 keeps the address node 0 had before.
    assert plan.vxlan6(0) == plan.vxlan6_network().network_address + 0x100
    assert plan.vxlan4(0) == plan.vxlan_subnet.network_address
    assert plan.overlay_problem(0) == (
        f"node 0's VXLAN IPv4 address {plan.vxlan_subnet.network_address} is the network address of "
        f"{plan.vxlan_subnet}: IDs 1-254 hold every host address there (give node 0 another ID, or move "
        "mesh.vxlan_subnet into a node block no ID uses)")
    assert plan.overlay_problem(1) is None and plan.overlay_problem(254) is None
