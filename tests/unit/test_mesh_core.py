"""The mesh-level core: which nodes are reachable, whom to connect to, over
which families, who serves a crossing join, plus the graph, proximity,
VXLAN, probe, routing, link-maker and migration pure parts."""

import ipaddress
import re
import shutil
import subprocess
import threading
import time

import pytest

from unit_helpers import init_node, link_data, make_link, random_key
from wgmesh_common import (
    allocation,
    graph,
    join,
    linkfile,
    linkops,
    mesh,
    meshview,
    migrations,
    probe,
    proximity,
    routing,
    vxlan,
)
from wgmesh_common.errors import ConfigError, RemoteError, WgmeshError
from wgmesh_common.joinapi import RequestError
from wgmesh_common.netlink import Route
from wgmesh_common.tomlio import read_toml, write_toml

BIRD_PROTO = meshview.RTPROT_BIRD


def route(destination: str, protocol: int = BIRD_PROTO, interface: str = "wgm2") -> Route:
    return Route(ipaddress.ip_network(destination), None, interface, protocol)


ROUTES = [
    route("10.0.2.1/32"),
    route("10.0.4.0/30"),            # the /30 of lo's address: node 4 too
    route("10.0.10.0/23"),           # a whole node block, covering its loopback: names no node
    route("10.0.14.0/31"),           # a /31 covering node 14's loopback: names no node
    route("10.0.16.0/24"),           # half a block, the same
    route("10.0.0.0/16"),            # an aggregate: names no node
    route("10.0.6.4/31"),            # a link /31 in node 6's block, not its loopback
    route("10.0.8.1/32", protocol=4),  # static, not learned from OSPF
    route("10.0.251.5/32"),          # VXLAN: nobody's block
    route("10.0.0.1/32"),            # this node itself
    route("10.0.200.1/32"),
    route("0.0.0.0/0"),
    route("fd10:0:0:c::1/128"),
    route("fd10:0:0:e::/64"),        # a whole node block: names no node
    route("fd10:0:0:10::/126"),      # covers node 16's loopback: names no node
    route("fd10::/48"),
    route("fd10:0:0:10::4/127"),
]


def test_reachable_nodes_v4(plan):
    assert meshview.reachable_nodes(ROUTES, plan, own_id=0) == {2, 4, 200}
    assert meshview.reachable_nodes(ROUTES, plan, own_id=0, bird_only=False) == {2, 4, 8, 200}


def test_reachable_nodes_v6(plan):
    assert meshview.reachable_nodes(ROUTES, plan, own_id=0, family=6) == {12}


@pytest.mark.parametrize("address, node_id", [
    ("10.0.2.1", 2), ("10.0.2.5", None), ("10.0.3.1", None), ("fd10:0:0:2::1", 2), ("fd10:0:0:2::5", None),
    ("fd10:0:0:fb::1", None), ("192.0.2.1", None), ("not an address", None),
])
def test_node_of_address(plan, address, node_id):
    assert meshview.node_of_address(plan, address) == node_id


def test_mesh_candidates(plan):
    # The higher ID connects: node 6 connects to 0 (2 is linked, 4 too far),
    # never to 8 (8 connects to 6) nor to the client 200.
    assert mesh.candidates(6, {0, 2, 4, 8, 200}, {2}, False, plan, too_far={4}) == [0]
    assert mesh.candidates(6, {4, 2, 0}, set(), False, plan) == [0, 2, 4]
    assert mesh.candidates(202, {0, 2}, set(), True, plan) == []


def test_mesh_candidates_settle_every_pair_once(plan):
    nodes = {0, 2, 4, 6, 8}
    connections = set()
    for own in nodes:
        for peer in mesh.candidates(own, nodes - {own}, set(), False, plan):
            connections.add(tuple(sorted((own, peer))))
            assert own > peer
    # Every pair is connected, by exactly one side.
    assert len(connections) == len(nodes) * (len(nodes) - 1) // 2


@pytest.mark.parametrize("own, linked, ours, theirs, too_far, wanted", [
    # No link at all: every family of ours, the peer not asked yet.
    (6, set(), {4, 6}, {}, set(), {0: [4, 6], 2: [4, 6], 4: [4, 6]}),
    # An IPv6 link but no IPv4 one: the IPv4 one, where the peer has IPv4 ...
    (6, {(0, 6), (2, 4), (2, 6), (4, 4), (4, 6)}, {4, 6}, {0: {4, 6}}, set(), {0: [4]}),
    # ... and nothing where the peer has IPv6 only, or says nothing.
    (6, {(0, 6), (2, 4), (2, 6), (4, 4), (4, 6)}, {4, 6}, {0: {6}}, set(), {}),
    (6, {(0, 6), (2, 4), (2, 6), (4, 4), (4, 6)}, {4, 6}, {0: set()}, set(), {}),
    # This node may link over IPv6 only (no IPv4 underlay, or transport = "6").
    (6, {(0, 6)}, {6}, {0: {4, 6}}, set(), {2: [6], 4: [6]}),
    # The IPv4 link missing, the IPv6 one there: only IPv4 is made.
    (6, {(0, 4), (2, 4), (4, 4)}, {4, 6}, {0: {4, 6}, 2: {4}, 4: {4, 6}}, set(), {0: [6], 4: [6]}),
    # Every link there: nothing to do. Too far: nothing either.
    (6, {(p, f) for p in (0, 2, 4) for f in (4, 6)}, {4, 6}, {}, set(), {}),
    (6, {(0, 6)}, {4, 6}, {0: {4, 6}}, {0, 4}, {2: [4, 6]}),
    # The higher ID connects, never to a client; a client connects to nobody.
    (2, set(), {4, 6}, {}, set(), {0: [4, 6]}),
    (202, set(), {4, 6}, {}, set(), {}),
    # No family this node can link over: nothing.
    (6, set(), set(), {}, set(), {}),
])
def test_missing_links_are_per_family(plan, own, linked, ours, theirs, too_far, wanted):
    reachable = {0, 2, 4, 6, 8, 200} - {own}
    assert mesh.missing_links(own, reachable, linked, ours, theirs, plan.is_client(own), plan, too_far) == wanted


@pytest.mark.parametrize("setting, requested, ours, theirs, families", [
    ("auto", None, {4, 6}, {4: "a", 6: "b"}, [4, 6]),
    ("auto", None, {4}, {4: "a", 6: "b"}, [4]),
    ("auto", None, {4, 6}, {6: "b"}, [6]),
    ("6", None, {4, 6}, {4: "a", 6: "b"}, [6]),
    ("4", None, {4, 6}, {4: "a", 6: "b"}, [4]),
    ("4", 6, {4, 6}, {4: "a", 6: "b"}, [6]),  # an explicit request wins over the setting
])
def test_choose_families(setting, requested, ours, theirs, families):
    assert join.choose_families(setting, requested, ours, theirs) == families


@pytest.mark.parametrize("setting, requested, ours, theirs, message", [
    ("auto", 6, {4, 6}, {4: "a"}, "the other node has no IPv6 underlay address"),
    ("auto", None, {4}, {6: "b"}, "no underlay family in common (this node: IPv4; the other: IPv6; transport setting: auto)"),
    ("6", None, {4, 6}, {4: "a"}, "no underlay family in common"),
    ("auto", None, set(), {}, "this node: none; the other: none"),
])
def test_choose_families_refuses(setting, requested, ours, theirs, message):
    with pytest.raises(WgmeshError) as caught:
        join.choose_families(setting, requested, ours, theirs)
    assert message in str(caught.value)


@pytest.mark.parametrize("url, info, expected", [
    ("http://198.51.100.1:8080", {"ipv4": "192.0.2.9", "ipv6": "2001:db8::9"},
     {4: "198.51.100.1", 6: "2001:db8::9"}),  # the URL's literal beats what the node says
    ("http://[2001:db8::1]:8080", {"ipv4": "192.0.2.9"}, {4: "192.0.2.9", 6: "2001:db8::1"}),
    ("http://10.0.2.1:8080", {"ipv4": "192.0.2.9", "ipv6": None}, {4: "192.0.2.9"}),  # a mesh URL is no underlay
    ("http://[fd10:0:0:2::1]:8080", {"ipv6": "2001:db8::9"}, {6: "2001:db8::9"}),
    ("http://example.com:8080", {"ipv4": "2001:db8::1", "ipv6": "garbage"}, {}),  # wrong family, not an address
    ("http://example.com:8080", {"ipv4": 5}, {}),
])
def test_peer_underlay(node, url, info, expected):
    assert join.peer_underlay(node, url, info) == expected


MESH = {"subnet": "10.0.0.0/16", "node_prefix": 23, "subnet6": "fd10::/48", "vxlan_subnet": "10.0.251.0/24"}


def test_check_compatible(node):
    assert join.check_compatible(node, {"id": 2, "mesh": MESH}, "u") == 2
    with pytest.raises(RemoteError, match="did not say its node ID"):
        join.check_compatible(node, {"mesh": MESH}, "u")
    with pytest.raises(RemoteError, match="did not say its node ID"):
        join.check_compatible(node, {"id": True, "mesh": MESH}, "u")
    with pytest.raises(WgmeshError, match="is node 0, this node itself"):
        join.check_compatible(node, {"id": 0, "mesh": MESH}, "u")
    with pytest.raises(WgmeshError, match="mesh settings differ: node_prefix is 24 on node 2 but 23 here"):
        join.check_compatible(node, {"id": 2, "mesh": dict(MESH, node_prefix=24)}, "u")
    with pytest.raises(WgmeshError, match="mesh settings differ: subnet is None"):
        join.check_compatible(node, {"id": 2}, "u")


# -------------------------------------------------- crossing joins (pure files)

def test_a_crossing_join_lower_id_waits_and_listens(node):
    """Node 0 is connecting to node 2 (a dialer reservation) while node 2
    connects here: the lower ID (0) listens once its own attempt is gone."""
    ours = node.allocator.reserve(2, "dialer", 4)
    result = {}

    def serve():
        result["reservation"] = join._reserve_serving(node, 2, 4)

    thread = threading.Thread(target=serve)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # still waiting for our own attempt to end
    node.allocator.release(ours)
    thread.join(5)
    reservation = result["reservation"]
    assert reservation.role == "listener" and reservation.name == "wgm2" and reservation.offset == 4


def test_a_crossing_join_higher_id_refuses_at_once(paths):
    node = init_node(paths, 4)
    node.allocator.reserve(2, "dialer", 4)
    started = time.monotonic()
    with pytest.raises(RequestError) as caught:
        join._reserve_serving(node, 2, 4)
    assert time.monotonic() - started < 1
    assert caught.value.status == 409 and "the lower ID (2) listens" in caught.value.reason


def test_a_crossing_join_that_never_settles_times_out(node, monkeypatch):
    monkeypatch.setattr(join, "CONCURRENT_JOIN_WAIT", 0.3)
    node.allocator.reserve(2, "dialer", 4)
    with pytest.raises(RequestError) as caught:
        join._reserve_serving(node, 2, 4)
    assert caught.value.status == 409


def test_serving_a_peer_that_already_has_a_link_is_409(node):
    linkfile.save(node.paths, make_link(), random_key(), random_key())
    with pytest.raises(RequestError) as caught:
        join._reserve_serving(node, 2, 4)
    assert caught.value.status == 409 and "already exists" in caught.value.reason


# ----------------------------------------------------------------- graph

OSPF_STATE = """\
area 0.0.0.0

\trouter 10.0.0.1
\t\tdistance 0
\t\trouter 10.0.2.1 metric 100
\t\trouter 10.0.2.1 metric 120
\t\tstubnet 10.0.0.0/30 metric 10

\trouter 10.0.2.1
\t\tdistance 100
\t\trouter 10.0.0.1 metric 120
\t\trouter 10.0.0.1 metric 100
\t\trouter 10.0.200.1 metric 10100

\trouter 10.0.200.1
\t\tdistance 10200
\t\trouter 10.0.2.1 metric 10100
"""


def test_parse_ospf_state():
    g = graph.parse_ospf_state(OSPF_STATE)
    assert set(g.nodes) == {"10.0.0.1", "10.0.2.1", "10.0.200.1"}
    assert g.edges == {
        ("10.0.0.1", "10.0.2.1"): [100, 120],
        ("10.0.2.1", "10.0.0.1"): [120, 100],
        ("10.0.2.1", "10.0.200.1"): [10100],
        ("10.0.200.1", "10.0.2.1"): [10100],
    }


def test_add_down_links_only_for_links_ospf_does_not_see():
    g = graph.parse_ospf_state(OSPF_STATE)
    graph.add_down_links(g, "10.0.0.1", ["10.0.2.1", "10.0.4.1"])
    assert g.down == {("10.0.0.1", "10.0.4.1")}
    assert "10.0.4.1" in g.nodes


def test_to_dot(tmp_path):
    g = graph.parse_ospf_state(OSPF_STATE)
    graph.add_down_links(g, "10.0.0.1", ["10.0.4.1"])
    dot = graph.to_dot(g, {"10.0.0.1": "node 0\\n10.0.0.1"}, {"10.0.200.1"}, own="10.0.0.1")
    lines = dot.splitlines()
    assert '\t"10.0.0.1" [label="node 0\\n10.0.0.1", style=bold];' in lines
    assert '\t"10.0.200.1" [label="10.0.200.1", shape=box];' in lines
    # One edge per pair, parallel links' costs both shown, the same both ways.
    assert '\t"10.0.0.1" -- "10.0.2.1" [label="100, 120"];' in lines
    assert '\t"10.0.2.1" -- "10.0.200.1" [label="10100"];' in lines
    assert '\t"10.0.0.1" -- "10.0.4.1" [label="down", style=dashed, color=red, fontcolor=red];' in lines
    assert sum(" -- " in line for line in lines) == 3
    if shutil.which("dot"):
        result = subprocess.run(["dot", "-Tcanon"], input=dot, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_to_dot_adds_own_measurements_and_colours_hurting_links():
    g = graph.parse_ospf_state(OSPF_STATE)
    graph.add_measurement(g, "10.0.2.1", 1.25, "ok")
    graph.add_measurement(g, "10.0.2.1", 151.0, "penalised")
    graph.add_measurement(g, "10.0.4.1", None, "down")
    g.nodes["10.0.4.1"] = {}
    g.edges[("10.0.0.1", "10.0.4.1")] = [65535]
    lines = graph.to_dot(g, {}, set(), own="10.0.0.1").splitlines()
    assert ('\t"10.0.0.1" -- "10.0.2.1" [label="100, 120\\n1.2 ms, 151.0 ms", color=darkorange, '
            'fontcolor=darkorange, penwidth=2];') in lines
    assert '\t"10.0.0.1" -- "10.0.4.1" [label="65535", color=red, fontcolor=red, penwidth=2];' in lines
    # Links between other nodes are drawn as OSPF sees them, nothing added.
    assert '\t"10.0.2.1" -- "10.0.200.1" [label="10100"];' in lines


def test_to_dot_shows_asymmetric_costs():
    g = graph.MeshGraph(nodes={"10.0.0.1": {}, "10.0.2.1": {}},
                        edges={("10.0.0.1", "10.0.2.1"): [100], ("10.0.2.1", "10.0.0.1"): [300]})
    assert '"10.0.0.1" -- "10.0.2.1" [label="100 / 300"];' in graph.to_dot(g, {}, set())


# ------------------------------------------------------------- proximity

def test_proximity_beyond():
    distances = {2: proximity.Distance(2, "a", 10.0), 4: proximity.Distance(4, "b", 50.5),
                 6: proximity.Distance(6, None, None)}
    assert proximity.beyond(distances, 0) == set()
    assert proximity.beyond(distances, 20) == {4}
    assert proximity.beyond(distances, 50) == {4}
    assert proximity.beyond(distances, 51) == set()


def test_proximity_store_round_trip(node):
    distances = [proximity.Distance(2, "192.0.2.2", 3.5), proximity.Distance(4, None, None)]
    proximity.save(node, distances)
    loaded = proximity.load(node)
    assert {k: (d.peer_id, d.address, d.rtt) for k, d in loaded.items()} == {2: (2, "192.0.2.2", 3.5), 4: (4, None, None)}
    assert all(d.measured for d in loaded.values())


def test_proximity_forgets_old_measurements_and_applies_the_cutoff(paths):
    node = init_node(paths, 0, "proximity_cutoff = 20\n")
    path = proximity.store_path(node)
    path.parent.mkdir(parents=True)
    old = time.time() - proximity.MAX_AGE - 10
    path.write_text(f'[[node]]\nid = 2\nrtt = 90.0\ntime = {old}\n\n[[node]]\nid = 4\nrtt = 90.0\ntime = {time.time()}\n')
    assert set(proximity.load(node)) == {4}
    assert proximity.excluded(node, {4}) == {4}
    path.write_text("garbage = \n")
    assert proximity.load(node) == {}


def test_the_cutoff_measures_candidates_it_has_no_fresh_measurement_of(paths, monkeypatch):
    node = init_node(paths, 0, "proximity_cutoff = 20\n")
    proximity.save(node, [proximity.Distance(4, "192.0.2.4", 5.0)])
    asked = []

    def measure(node, count=3, peers=None):  # the underlay (ICMP, the peers' APIs) is the boundary
        asked.append(set(peers))
        return [proximity.Distance(p, f"192.0.2.{p}", 90.0) for p in sorted(peers)]

    monkeypatch.setattr(proximity, "measure", measure)
    assert proximity.excluded(node, {2, 4}) == {2}
    assert asked == [{2}]  # node 4's measurement was fresh
    assert proximity.excluded(node, {2, 4}) == {2} and asked == [{2}]  # and now node 2's is kept too
    # Saving node 2's measurement kept node 4's own time, not "now".
    assert proximity.load(node)[4].measured <= proximity.load(node)[2].measured


# ----------------------------------------------------------------- vxlan

def test_vxlan_desired_entries(plan):
    v4, v6 = vxlan.DEVICES
    assert vxlan.desired_entries(plan, 0, ROUTES, v4) == {"10.0.2.1", "10.0.4.1", "10.0.200.1"}
    assert vxlan.desired_entries(plan, 0, ROUTES, v6) == {"fd10:0:0:c::1"}


def test_vxlan_addresses(plan):
    v4, v6 = vxlan.DEVICES
    assert vxlan.device_addresses(plan, 2, v4) == ["10.0.251.2/24"]
    assert vxlan.device_addresses(plan, 2, v6) == ["fd10:0:0:fb::2/64"]
    assert vxlan.local_address(plan, 2, v4) == "10.0.2.1"
    assert vxlan.local_address(plan, 2, v6) == "fd10:0:0:2::1"
    # The overlay's addresses never collide with any node's block.
    assert all(plan.owner_of(plan.vxlan4(n)) is None for n in plan.valid_node_ids())


def test_an_overlay_device_loses_the_addresses_of_an_older_plan(plan):
    v4, v6 = vxlan.DEVICES
    # Node 0 before schema 2: host part 0, the network / subnet-router anycast address.
    assert vxlan.stale_addresses(["10.0.251.0/24", "10.0.251.1/24"], vxlan.device_addresses(plan, 0, v4)) == ["10.0.251.0/24"]
    assert vxlan.stale_addresses(["fd10:0:0:fb::/64", "fd10:0:0:fb::1/64", "fe80::1c2b:3ff:fe4d:5e6f/64"],
                                 vxlan.device_addresses(plan, 0, v6)) == ["fd10:0:0:fb::/64"]
    assert vxlan.stale_addresses(vxlan.device_addresses(plan, 2, v4), vxlan.device_addresses(plan, 2, v4)) == []


# ----------------------------------------------------------------- probes

@pytest.mark.parametrize("samples, sent, received, loss, rtts, jitter", [
    ([1.0, None, 3.0, 2.0], 4, 3, 25.0, (1.0, 2.0, 3.0), 1.5),
    ([5.0, 5.0, 5.0], 3, 3, 0.0, (5.0, 5.0, 5.0), 0.0),
    ([2.0], 1, 1, 0.0, (2.0, 2.0, 2.0), None),
    ([None, None, None], 3, 0, 100.0, (None, None, None), None),
    ([], 0, 0, 100.0, (None, None, None), None),
    ([1.0, None, None], 3, 1, 66.67, (1.0, 1.0, 1.0), None),
])
def test_probe_summarize(samples, sent, received, loss, rtts, jitter):
    r = probe.summarize("wgm2", 2, 100.0, samples)
    assert (r.link, r.peer, r.time) == ("wgm2", 2, 100.0)
    assert (r.sent, r.received, r.loss) == (sent, received, loss)
    assert (r.rtt_min, r.rtt_avg, r.rtt_max) == rtts
    assert r.jitter == jitter


def test_probe_windows_keep_the_last_rounds_round_trip_and_stale_ones_go(paths):
    link2, link4 = make_link(), make_link(name="wgm4", peer_id=4)
    window = None
    for when in range(8):
        window = probe.add_round(window, link2, 100.0 + when, [1.0, None, 2.0], window_rounds=6)
    assert [r.time for r in window.rounds] == [102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
    assert window.rounds[-1].rtts == (1.0, 2.0) and window.rounds[-1].sent == 3
    dead = probe.add_round(None, link4, 100.0, [None, None], window_rounds=6)
    for item in (window, dead):
        probe.write(paths, item)
    assert probe.read(paths, "wgm2") == window
    # A link that answered nothing reads back as total loss, not as "never probed".
    assert probe.read_result(paths, "wgm4") == probe.summarize("wgm4", 4, 100.0, [None, None])
    assert probe.read_result(paths, "wgm2") == probe.summarize("wgm2", 2, 107.0, [1.0, 2.0, None])
    probe.prune(paths, ["wgm2"])
    assert probe.read(paths, "wgm4") is None
    assert sorted(p.name for p in paths.probe_dir.iterdir()) == ["wgm2.toml"]


def test_a_round_after_the_clock_stepped_back_replaces_the_rounds_dated_later():
    window = None
    for when in (100.0, 110.0, 120.0):
        window = probe.add_round(window, make_link(), when, [1.0], window_rounds=6)
    window = probe.add_round(window, make_link(), 105.0, [2.0, -3.0], window_rounds=6)
    assert [(r.time, r.rtts, r.sent) for r in window.rounds] == [(100.0, (1.0,), 1), (105.0, (2.0,), 2)]


def test_a_window_of_another_peer_under_the_same_name_starts_afresh():
    old = probe.add_round(None, make_link(), 100.0, [1.0], window_rounds=6)
    new = probe.add_round(old, make_link(peer_id=6), 110.0, [2.0], window_rounds=6)
    assert [r.time for r in new.rounds] == [110.0]


@pytest.mark.parametrize("content, problem", [
    ("link = 'wgm2'\n", "missing 'peer'"),
    ("link = 'wgm2'\npeer = 2\n[[rounds]]\ntime = 1.0\nsent = 2\nrtts = [1.0, 2.0, 3.0]\n", "at most `sent`"),
    ("link = 'wgm2'\npeer = 2\n[[rounds]]\ntime = 1.0\nsent = 2\nrtts = [-1.0]\n", "from 0 to 60000 ms"),
    ("link = 'wgm2'\npeer = 2\n[[rounds]]\ntime = 1.0\nsent = 2\nrtts = [1e308]\n", "from 0 to 60000 ms"),
    ("link = 'wgm2'\npeer = 2\n[[rounds]]\ntime = nan\nsent = 2\n", "finite"),
    ("link = 'wgm2'\npeer = 2\n[[rounds]]\nsent = 2\n", "missing 'time'"),
    ("link = 'wgm2'\npeer = true\n", "peer an ID"),
    ("this is not toml", "not valid TOML"),
])
def test_bad_probe_files_are_named_errors(paths, content, problem):
    probe.probe_path(paths, "wgm2").parent.mkdir(parents=True)
    probe.probe_path(paths, "wgm2").write_text(content)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        probe.read(paths, "wgm2")
    assert probe.read_result(paths, "wgm2") is None


# ----------------------------------------------------- routing and links

def test_routing_apply_writes_only_on_change(node):
    paths, config = node.paths, node.config
    assert routing.apply(paths, config) is True
    first = paths.bird_config.read_text()
    assert "router id 10.0.0.1;" in first and 'interface "wgm' not in first
    assert routing.apply(paths, config) is False
    linkfile.save(paths, make_link(), random_key(), random_key())
    linkfile.save(paths, make_link(name="wgm200", peer_id=200, offset=6, local4="10.0.0.6", peer4="10.0.0.7",
                                   listen_port=51821), random_key(), random_key())
    assert routing.apply(paths, config) is True
    text = paths.bird_config.read_text()
    assert 'interface "wgm2" { type ptp; cost 100; hello 1; dead 4; retransmit 2; };' in text
    assert 'interface "wgm200" { type ptp; cost 10100; hello 1; dead 4; retransmit 2; };' in text


def test_routing_of_a_client_node(paths):
    node = init_node(paths, 202)
    interfaces = routing.base_interfaces(node.config, [make_link(name="wgm0", peer_id=0)])
    assert interfaces[0].cost == 10100
    assert "stub router yes;" in routing.render_config(node.config, interfaces)


def test_device_settings_listener_and_dialer():
    listener = make_link()
    dialer = make_link(role="dialer", endpoint="192.0.2.1:51820", keepalive=15)
    s = linkops.device_settings(listener, "PRIV", "PSK")
    c = linkops.device_settings(dialer, "PRIV", "PSK")
    # The listener learns the endpoint from the handshake; only the dialer keeps NAT open.
    assert (s.endpoint, s.keepalive) == (None, 0)
    assert (c.endpoint, c.keepalive) == ("192.0.2.1:51820", 15)
    assert (c.private_key, c.preshared_key, c.peer_public_key, c.listen_port) == (
        "PRIV", "PSK", dialer.peer_public_key, dialer.listen_port)


def test_interface_addresses():
    link = make_link(local4="10.0.2.5", local6="fd10:0:0:2::5")
    assert linkops.interface_addresses(link) == ["10.0.2.5/31", "fd10:0:0:2::5/127", "fe80::a00:205/64"]


def test_node_loopback_addresses(paths):
    from wgmesh_common import supervisor

    assert supervisor.node_loopback_addresses(init_node(paths, 2).config) == [
        "10.0.2.1/30", "fd10:0:0:2::1/128", "fe80::1/64"]


# -------------------------------------------------------------- migrations

def test_migrate_applies_once(node):
    assert migrations.applied(node.paths) == 0
    assert migrations.migrate(node.paths) == [version for version, _ in migrations.MIGRATIONS]
    assert migrations.applied(node.paths) == migrations.CURRENT
    assert migrations.migrate(node.paths) == []


def test_migrate_refuses_unreadable_state_and_records_nothing(node):
    node.paths.links_dir.mkdir(parents=True)
    node.paths.link_file("wgm2").write_text("broken = \n")
    with pytest.raises(ConfigError, match="wgm2.toml"):
        migrations.migrate(node.paths)
    assert migrations.applied(node.paths) == 0


def test_migrate_refuses_a_newer_schema(node):
    migrations.schema_file(node.paths).parent.mkdir(parents=True)
    migrations.schema_file(node.paths).write_text("99\n")
    with pytest.raises(ConfigError, match="newer than this wgmesh"):
        migrations.migrate(node.paths)


# The link roles as schema 2 wrote them (and as schema 3 does), and what
# schema 3 makes of each.
ROLE_TABLE = [("server", "listener"), ("client", "dialer"), ("listener", "listener"), ("dialer", "dialer")]


def _write_schema_2_state(node) -> dict[str, dict]:
    """A link file per row of ROLE_TABLE, a held and an unheld reservation
    with the old words; the link files' documents by name."""
    documents = {}
    for index, (old, _) in enumerate(ROLE_TABLE):
        peer = 2 * (index + 1)
        data = link_data(name=f"wgm{peer}", peer_id=peer, role=old, listen_port=51820 + index, offset=4 + 2 * index)
        if old in ("client", "dialer"):
            data["endpoint"] = f"192.0.2.{peer}:51820"
        write_toml(node.paths.link_file(data["name"]), data)
        documents[data["name"]] = data
    for peer, role, old, hold in ((20, "dialer", "client", True), (22, "listener", "server", False)):
        reservation = node.allocator.reserve(peer, role, 4, hold=hold)
        path = node.paths.reservations_dir / f"{reservation.name}.toml"
        write_toml(path, {**read_toml(path), "role": old})
    migrations.schema_file(node.paths).write_text("2\n")
    return documents


def _state_bytes(node) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in (node.paths.links_dir, node.paths.reservations_dir)
            for p in sorted(d.glob("*.toml"))}


def test_migration_3_rewrites_link_roles_and_reservations_once(node):
    documents = _write_schema_2_state(node)
    # Read before the migration too (the generator at boot, a join across the upgrade).
    assert {link.name: link.role for link in linkfile.load_all(node.paths)[0]} == {
        f"wgm{2 * (i + 1)}": new for i, (_, new) in enumerate(ROLE_TABLE)}
    assert {r.name: r.role for r in node.allocator.reservations()} == {"wgm20": "dialer", "wgm22": "listener"}

    assert migrations.migrate(node.paths) == [3]

    for index, (name, before) in enumerate(documents.items()):
        # Only the role changed, word for word as the table says.
        assert read_toml(node.paths.link_file(name)) == {**before, "role": ROLE_TABLE[index][1]}
    for name, role in (("wgm20", "dialer"), ("wgm22", "listener")):
        assert read_toml(node.paths.reservations_dir / f"{name}.toml")["role"] == role
    # The held reservation is still held by this process: a join in flight keeps its name.
    assert allocation.holder_alive(node.paths.reservations_dir / "wgm20.lock")
    assert {r.name for r in node.allocator.reservations()} == {"wgm20", "wgm22"}

    before = _state_bytes(node)
    migrations.schema_file(node.paths).write_text("2\n")
    assert migrations.migrate(node.paths) == [3]
    assert _state_bytes(node) == before
    assert linkfile.rewrite_legacy_roles(node.paths) == allocation.rewrite_legacy_roles(node.paths) == []
    node.allocator.release(next(r for r in node.allocator.reservations() if r.name == "wgm20"))


def test_migration_3_leaves_a_link_file_it_cannot_read(node):
    data = link_data(role="server", listen_port=0)
    write_toml(node.paths.link_file("wgm2"), data)
    assert linkfile.rewrite_legacy_roles(node.paths) == []
    assert read_toml(node.paths.link_file("wgm2")) == data


# ------------------------------------------- what a connect does per family

@pytest.mark.parametrize("has_file, running, established, reserved, action", [
    (False, False, False, False, "join"),
    # A live holder is making it: neither joined again nor removed under it.
    (False, False, False, True, "busy"),
    (True, False, False, True, "busy"),
    (True, True, False, False, "keep"),
    (True, True, True, False, "keep"),
    # Files of a join killed before it started them: both halves go, joined anew.
    (True, False, False, False, "redo"),
    # A link that worked once and is only not running (a stopped unit).
    (True, False, True, False, "start"),
])
def test_family_action(has_file, running, established, reserved, action):
    state = join.FamilyState(has_file=has_file, running=running, established=established, reserved=reserved)
    assert join.family_action(state) == action


def test_family_state_reads_files_reservations_and_interfaces(node):
    from unit_helpers import make_link, random_key

    link = make_link()
    linkfile.save(node.paths, link, random_key(), random_key())
    # The unit tests stop at netlink: no interface wgm2 on this host.
    assert join.family_state(node, link.name, set()) == join.FamilyState(True, False, False, False)
    assert join.family_action(join.family_state(node, link.name, set())) == "redo"
    assert join.family_state(node, "wgm2v6", {"wgm2v6"}) == join.FamilyState(False, False, False, True)


# ----------------------------------------------------- one family after the other

def test_an_unexpected_error_in_one_family_keeps_the_other_familys_link():
    link6 = make_link(name="wgm2v6", family=6)

    def make(family):
        if family == 4:
            raise OSError(28, "No space left on device")
        return link6

    outcomes = join._each_family([4, 6], make)
    assert outcomes[6] is link6
    assert isinstance(outcomes[4], WgmeshError) and "unexpected OSError" in str(outcomes[4])
