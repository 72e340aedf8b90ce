"""What `wgmesh status` shows: link state, ages, the table."""

import pytest

from wgmesh_common.status import HANDSHAKE_FRESH, LinkRow, age, as_dicts, link_state, table

NOW = 1_700_000_000.0


@pytest.mark.parametrize("up, handshake, state", [
    (False, NOW - 1, "down"),
    (False, 0.0, "down"),
    (True, 0.0, "no-handshake"),
    (True, NOW - 5, "up"),
    (True, NOW - HANDSHAKE_FRESH + 0.1, "up"),
    (True, NOW - HANDSHAKE_FRESH, "stale"),
    (True, NOW - 3600, "stale"),
])
def test_link_state(up, handshake, state):
    assert link_state(up, handshake, NOW) == state


@pytest.mark.parametrize("seconds, text", [
    (0, "0s ago"),
    (59.9, "59s ago"),
    (119, "119s ago"),
    (120, "2m ago"),
    (3599, "59m ago"),
    (7199, "119m ago"),
    (7200, "2h ago"),
    (86400 * 3, "72h ago"),
])
def test_age(seconds, text):
    assert age(seconds) == text


def row(name="wgm2", peer=2, transport="IPv4", endpoint="192.0.2.1:51820", state="up", handshake="5s ago",
        ospf="Full", **quality) -> LinkRow:
    return LinkRow(name, peer, transport, endpoint, state, handshake, ospf, **quality)


def test_table_without_rows_is_the_header():
    assert table([]) == "LINK  PEER  TRANSPORT  ENDPOINT  STATE  HANDSHAKE  OSPF  RTT  LOSS  JITTER  COST  WHY"


def test_table_aligns_columns():
    # Rounds of 30, 30, 0 ms on a host at 30, 0, 0: medians of 30 and 0,
    # but the jitter above the host's is 0, 30, 0, and judged at 0.
    rows = [row(rtt=1.234, loss=0.0, jitter=30.0, host_jitter=0.0, link_jitter=0.0, cost=112, why="latency"),
            row("wgm200v6", 200, "IPv6", "[2001:db8::1]:51820", "no-handshake", "never", "-", why="not measured yet")]
    lines = table(rows).splitlines()
    assert lines == [
        "LINK      PEER  TRANSPORT  ENDPOINT             STATE         HANDSHAKE  OSPF  RTT    LOSS  JITTER                   COST  WHY",
        "wgm2      2     IPv4       192.0.2.1:51820      up            5s ago     Full  1.2ms  0.0%  30.0ms (0.0 above host)  112   latency",
        "wgm200v6  200   IPv6       [2001:db8::1]:51820  no-handshake  never      -     -      -     -                        -     not measured yet",
    ]
    # Every column starts at the same place on every line, and no line has trailing blanks.
    for header in ("PEER", "ENDPOINT", "OSPF"):
        column = lines[0].index(header)
        assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines)
    assert all(line == line.rstrip() for line in lines)


def test_as_dicts_keeps_every_field():
    assert as_dicts([row()]) == [{"name": "wgm2", "peer": 2, "transport": "IPv4", "endpoint": "192.0.2.1:51820",
                                  "state": "up", "handshake": "5s ago", "ospf": "Full", "rtt": None,
                                  "loss": None, "jitter": None, "host_jitter": None, "link_jitter": None, "cost": None, "why": "-",
                                  "penalties": {},
                                  "peer_forwards": True, "last_handshake": None, "rx_bytes": None,
                                  "tx_bytes": None}]


def test_routed_nodes_names_the_interface_of_each_node_route_in_either_family():
    import ipaddress

    from wgmesh_common.addressing import MeshPlan
    from wgmesh_common.meshview import routed_nodes
    from wgmesh_common.netlink import Route

    routes4 = [
        Route(ipaddress.ip_network("10.0.2.1/32"), "10.0.0.5", "wgm2", 12),
        Route(ipaddress.ip_network("10.0.4.1/32"), "10.0.0.5", "wgm2", 12),
        Route(ipaddress.ip_network("10.0.0.4/31"), None, "wgm2", 12),    # a link, not a node
        Route(ipaddress.ip_network("10.0.0.1/32"), None, "lo", 12),      # this node itself
        Route(ipaddress.ip_network("10.0.6.1/32"), "198.18.0.1", "eth0", 3),  # not from bird
    ]
    routes6 = [
        Route(ipaddress.ip_network("fd10:0:0:2::1/128"), None, "wgm2v6", 12),  # IPv4's interface wins
        Route(ipaddress.ip_network("fd10:0:0:8::1/128"), None, "wgm8v6", 12),  # routed over IPv6 only
    ]
    assert routed_nodes(routes4, routes6, MeshPlan.default(), 0) == {2: "wgm2", 4: "wgm2", 8: "wgm8v6"}
