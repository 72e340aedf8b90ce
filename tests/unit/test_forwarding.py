"""A node that cannot forward (a read-only /proc/sys): the operator's one
line, the state the node unit leaves, how its own links and its peers'
links to it are routed, what crosses the wire at join time, and the mesh
pass that reports each peer it cannot link with.

/proc/sys of this machine is never written; systemd (starting link units)
is the machine boundary, recorded by a fake supervisor."""

import ipaddress
import json
import shutil
import subprocess

import pytest

from test_commands import CONNECTIVITY, FakeJoinServer
from unit_helpers import init_node, link_data, make_link, random_key
from wgmesh_common import (
    bird,
    forwarding,
    join,
    joinapi,
    linkfile,
    mesh,
    meshview,
    netlink,
    routing,
    status,
    supervisor,
)
from wgmesh_common.addressing import MeshPlan
from wgmesh_common.errors import ConfigError
from wgmesh_common.joinapi import RequestError
from wgmesh_common.joinserver import JoinService
from wgmesh_common.netlink import Route
from wgmesh_common.tokens import TokenStore

BIRD = shutil.which("bird") or shutil.which("bird", path="/usr/sbin")
BOTH = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
CANNOT = "this node cannot forward: test"


# ------------------------------------------------------ the operator's line

@pytest.mark.parametrize("off, read_only, error, container, wanted", [
    (BOTH, True, None, "systemd-nspawn", "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network"),
    (BOTH, True, None, "lxc", "lxc.sysctl.net.ipv4.ip_forward = 1 and lxc.sysctl.net.ipv6.conf.all.forwarding = 1"),
    (BOTH[:1], True, None, "docker", "--sysctl net.ipv4.ip_forward=1"),
    (BOTH, True, None, None, "from outside it"),
    (BOTH[1:], False, "Permission denied", None, "setting them failed (Permission denied)"),
])
def test_the_advice_is_one_line_that_names_what_to_change(off, read_only, error, container, wanted):
    line = forwarding.advice(off, read_only, error, container)
    assert line.startswith("this node cannot forward: ") and "\n" not in line
    assert wanted in line
    assert all(name in line for name in off)
    assert "restart wgmesh-node.service" in line and "leaf" in line


def test_a_read_only_setting_is_named_with_its_container():
    line = forwarding.advice(BOTH, True, "Read-only file system", "systemd-nspawn")
    assert "/proc/sys/net is read-only in a systemd-nspawn container" in line
    assert "net.ipv4.ip_forward and net.ipv6.conf.all.forwarding are 0" in line


# ------------------------------------------------------------ the state file

def test_no_state_file_is_a_node_that_forwards(paths):
    assert forwarding.forwards(paths) and forwarding.problem(paths) is None


def test_the_node_units_answer_is_kept_and_cleared(paths):
    forwarding.record(paths, CANNOT)
    assert forwarding.problem(paths) == CANNOT and not forwarding.forwards(paths)
    forwarding.record(paths, None)
    assert forwarding.forwards(paths) and not forwarding.state_file(paths).exists()


def test_an_unreadable_state_file_is_taken_as_cannot_forward(paths):
    forwarding.state_file(paths).parent.mkdir(parents=True)
    forwarding.state_file(paths).write_text("forwards = ")
    assert not forwarding.forwards(paths)
    assert forwarding.problem(paths).startswith("this node cannot forward: ")


# --------------------------------------------------------- the link file

def test_peer_forwards_is_written_only_when_false(paths):
    linkfile.save(paths, make_link(), random_key(), random_key())
    assert "peer_forwards" not in paths.link_file("wgm2").read_text()
    assert linkfile.load(paths, "wgm2").peer_forwards is True
    linkfile.save(paths, make_link(peer_forwards=False), random_key(), random_key())
    assert "peer_forwards = false" in paths.link_file("wgm2").read_text()
    assert linkfile.load(paths, "wgm2").peer_forwards is False


@pytest.mark.parametrize("value", [0, 1, "no"])
def test_peer_forwards_must_be_true_or_false(value):
    with pytest.raises(ConfigError, match="peer_forwards has the wrong type"):
        linkfile.parse(link_data(peer_forwards=value), "test")


# ----------------------------------------------------------------- routing

def test_a_link_to_a_peer_that_cannot_forward_is_routed_like_a_clients(node, plan):
    leaf = make_link(peer_forwards=False)
    server = make_link(name="wgm4", peer_id=4, offset=6, local4="10.0.0.6", peer4="10.0.0.7",
                       local6="fd10::6", peer6="fd10::7")
    interfaces = {i.name: i for i in routing.base_interfaces(node.config, [leaf, server])}
    assert interfaces["wgm2"].cost == node.config.base_cost + bird.CLIENT_COST_PENALTY
    assert interfaces["wgm4"].cost == node.config.base_cost
    # Only the peer's own block and the link's net may be routed over it.
    assert (interfaces["wgm2"].client_only4, interfaces["wgm2"].client_only6) == (
        ("10.0.2.0/23", "10.0.0.4/31"), ("fd10:0:0:2::/64", "fd10::4/127"))
    assert interfaces["wgm4"].client_only4 == ()
    text = routing.render_config(node.config, list(interfaces.values()))
    assert 'if ifname = "wgm2" && net !~ [ 10.0.2.0/23+, 10.0.0.4/31+ ] then reject;' in text
    assert "stub router" not in text


def test_the_measured_cost_of_such_a_link_keeps_the_penalty(node):
    linkfile.save(node.paths, make_link(peer_forwards=False), random_key(), random_key())
    [decided] = routing.decide_all(node.paths, node.config, linkfile.load_all(node.paths)[0], windows={})
    assert decided.decision.cost >= bird.CLIENT_COST_PENALTY


def test_a_node_that_cannot_forward_is_a_stub_router_whose_links_cost_a_clients(node, monkeypatch):
    monkeypatch.setattr(netlink, "mesh_table", lambda: netlink.MAIN_TABLE)
    linkfile.save(node.paths, make_link(), random_key(), random_key())
    routing.apply(node.paths, node.config)
    assert "stub router" not in node.paths.bird_config.read_text()
    forwarding.record(node.paths, CANNOT)
    routing.apply(node.paths, node.config)
    text = node.paths.bird_config.read_text()
    assert text.count("stub router yes;") == 2  # OSPFv2 and OSPFv3
    assert f'interface "wgm2" {{ type ptp; cost {node.config.base_cost + bird.CLIENT_COST_PENALTY};' in text
    if BIRD:  # bird 2.0.12 takes the option (in both instances)
        result = subprocess.run([BIRD, "-p", "-c", str(node.paths.bird_config)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


# --------------------------------------------------------------- the wire

@pytest.mark.parametrize("extra, forwards", [({}, True), ({"forwarding": True}, True),
                                             ({"forwarding": False}, False)])
def test_connect_requests_may_say_the_joining_node_cannot_forward(plan, extra, forwards):
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 4, **extra}
    assert joinapi.parse_connect(body, plan, 0).forwards is forwards


def test_forwarding_must_be_true_or_false(plan):
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 4, "forwarding": "no"}
    with pytest.raises(RequestError, match="field 'forwarding' must be true or false") as raised:
        joinapi.parse_connect(body, plan, 0)
    assert raised.value.status == 400


class RecordingSupervisor:
    """systemd, at the machine boundary: which links were started."""

    def __init__(self):
        self.started = []

    def start_link(self, name):
        self.started.append(name)

    def stop_link(self, name):
        pass

    def links_changed(self):
        pass


@pytest.fixture
def machine(monkeypatch):
    """No systemd, no routes, no underlay of this host: a fake supervisor,
    an empty routing table, and the configured addresses only."""
    fake = RecordingSupervisor()
    monkeypatch.setattr(supervisor, "choose", lambda paths, config: fake)
    monkeypatch.setattr(netlink, "routes", lambda family, table: [])
    monkeypatch.setattr(netlink, "mesh_table", lambda: netlink.MAIN_TABLE)
    monkeypatch.setattr(netlink, "underlay_addresses", dict)
    monkeypatch.setattr(netlink, "route_interface", lambda address: "eth0")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return fake


def test_connectivity_says_whether_the_node_forwards(paths, machine):
    node = init_node(paths, 0, 'public_ipv4 = "192.0.2.1"\n')
    assert join.connectivity_info(node)["forwarding"] is True
    forwarding.record(paths, CANNOT)
    assert join.connectivity_info(node)["forwarding"] is False


def test_the_serving_side_remembers_a_joining_node_that_cannot_forward(paths, machine):
    node = init_node(paths, 0, 'public_ipv4 = "192.0.2.1"\n')
    token = TokenStore(paths.tokens_file).default_token()
    body = {"id": 2, "token": token, "public_key": random_key(), "listen_port": 51820, "family": 4,
            "forwarding": False, "protocol": 2}
    code, document, _ = JoinService(node).handle("POST", "/connect", {}, json.dumps(body).encode(),
                                                 "198.51.100.2", "192.0.2.1")
    assert code == 200, document
    assert machine.started == ["wgm2"]
    assert linkfile.load(paths, "wgm2").peer_forwards is False


@pytest.mark.parametrize("said, remembered", [(False, False), (True, True), (None, True), ("false", True)])
def test_the_connecting_side_remembers_what_the_peer_said(paths, machine, said, remembered):
    node = init_node(paths, 4, 'public_ipv4 = "192.0.2.4"\n[wireguard]\ntransport = "4"\n')
    info = dict(CONNECTIVITY[1])
    if said is not None:
        info["forwarding"] = said
    remote = FakeJoinServer({"/connectivity": (200, info), "/connect": (200, {
        "id": 2, "name": "wgm4", "public_key": random_key(), "preshared_key": random_key(),
        "listen_port": 51830, "offset": 4, "mtu": 1420})})
    try:
        [link] = join.connect(node, remote.url, "token")
    finally:
        remote.close()
    assert link.peer_forwards is remembered and linkfile.load(paths, "wgm2").peer_forwards is remembered
    # A node that forwards says nothing of it: older servers accept its requests.
    assert "forwarding" not in remote.requests[1][1]


def test_a_node_that_cannot_forward_says_so_when_it_joins(paths, machine):
    node = init_node(paths, 4, 'public_ipv4 = "192.0.2.4"\n[wireguard]\ntransport = "4"\n')
    forwarding.record(paths, CANNOT)
    remote = FakeJoinServer({"/connectivity": CONNECTIVITY, "/connect": (409, {"error": "busy"})})
    try:
        with pytest.raises(Exception, match="busy"):
            join.connect(node, remote.url, "token")
    finally:
        remote.close()
    assert remote.requests[1][1]["forwarding"] is False


# ------------------------------------------------------------------ status

def test_status_says_this_node_cannot_forward_and_names_such_peers():
    rows = [status.LinkRow("wgm0", 0, "IPv4", "-", "up", "1s ago", "Full", peer_forwards=False),
            status.LinkRow("wgm0v6", 0, "IPv6", "-", "up", "1s ago", "Full", peer_forwards=False),
            status.LinkRow("wgm2", 2, "IPv4", "-", "up", "1s ago", "Full")]
    assert status.forwarding_lines(CANNOT, rows) == [
        CANNOT, "peers that cannot forward (no transit through them): node 0"]
    assert status.forwarding_lines(None, rows[2:]) == []


# -------------------------------------------------------------- the mesh pass

# `birdc show route primary protocol wgmesh4` as bird 2.0.12 prints it, after
# the control socket's codes and leading spaces are stripped.
BIRD_ROUTES = """Table master4:
10.0.2.0/30          unicast [wgmesh4 13:24:28.239] * I (150/65735) [10.0.2.1]
\tvia 10.0.0.4 on wgm0 weight 1
\tvia 10.0.0.6 on wgm0v6 weight 1
10.0.0.0/30          unicast [wgmesh4 13:24:28.239] * I (150/110) [10.0.0.1]
\tvia 10.0.0.4 on wgm0
10.0.6.0/30          unicast [wgmesh4 13:24:28.239] * I (150/200) [10.0.6.1]
\tvia 10.0.0.12 on wgm8
10.0.8.0/30          unicast [wgmesh4 13:24:28.239] * I (150/100) [10.0.8.1]
\tdev wgm8
"""


def test_parse_routes_gives_each_next_hop():
    assert bird.parse_routes(BIRD_ROUTES) == [
        ("10.0.2.0/30", "wgm0"), ("10.0.2.0/30", "wgm0v6"), ("10.0.0.0/30", "wgm0"),
        ("10.0.6.0/30", "wgm8"), ("10.0.8.0/30", "wgm8")]
    assert bird.parse_routes("Table master4:\n") == []


def test_stranded_nodes_are_those_routed_only_through_leaves(plan):
    routes = bird.parse_routes(BIRD_ROUTES)
    leaves = {"wgm0": 0, "wgm0v6": 0}
    # Node 2 only through node 0; node 0 itself is its own peer; node 6 is
    # routed through node 8, which forwards; node 8 is linked.
    assert mesh.stranded(plan, 4, routes, reachable={0, 6, 8}, leaf_peers=leaves) == {2: {0}}
    assert mesh.stranded(plan, 4, routes, reachable={0, 2, 6, 8}, leaf_peers=leaves) == {}
    assert mesh.stranded(plan, 4, routes, reachable={0, 6, 8}, leaf_peers={}) == {}


def test_the_reason_names_the_node_in_the_way():
    plan = MeshPlan.default()
    assert "through node 0 (cannot forward), node 200 (a client)" in mesh.stranded_reason(plan, {200, 0})


def test_a_pass_with_a_failure_reports_it_and_exits_non_zero():
    made = make_link(role="dialer", endpoint="192.0.2.2:51820")
    assert mesh.PassReport().lines() == ["nothing to do: linked with every node it should be"]
    assert mesh.PassReport().exit_status == 0
    report = mesh.PassReport([made], {6: "cannot reach http://10.0.6.1:8080: timed out", 2: "why"})
    assert report.lines() == ["linked with node 2: wgm2", "node 2: not linked: why",
                              "node 6: not linked: cannot reach http://10.0.6.1:8080: timed out"]
    assert report.exit_status == 1
    assert not any("nothing to do" in line for line in mesh.PassReport([], {2: "why"}).lines())
    assert mesh.PassReport([made]).exit_status == 0


def test_one_hostile_peer_does_not_abort_the_pass_for_the_others(paths, machine):
    """A peer whose /connect answer carries "offset": 1e400 made the join
    raise an OverflowError that ended the whole pass; now it costs that
    peer's link only, and every peer is reported."""
    node = init_node(paths, 8, 'public_ipv4 = "192.0.2.8"\n[wireguard]\ntransport = "4"\n')
    hostile = FakeJoinServer({"/connectivity": CONNECTIVITY, "/connect": (200, {
        "id": 2, "name": "wgm8", "public_key": random_key(), "preshared_key": random_key(),
        "listen_port": 51830, "offset": 1e400, "mtu": 1420})})
    refusing = FakeJoinServer({"/connectivity": (200, dict(CONNECTIVITY[1], id=4)),
                               "/connect": (409, {"error": "try later"})})
    urls = {2: hostile.url, 4: refusing.url}
    try:
        report = mesh.link_all(node, [2, 4], urls.get)
    finally:
        hostile.close()
        refusing.close()
    assert report.made == [] and set(report.failed) == {2, 4}
    assert "409" in report.failed[4] and "try later" in report.failed[4]
    assert report.exit_status == 1
    assert "/connect" in refusing.paths_asked()
    # Nothing of the failed joins is left reserved.
    assert not paths.reservations_dir.exists() or not list(paths.reservations_dir.iterdir())


def test_a_node_routed_over_ipv6_only_is_waited_for_then_reported_not_linked(paths, machine, monkeypatch):
    """OSPFv3 may route a new node's IPv6 loopback before OSPFv2 routes its
    IPv4 one, where its join API listens: the pass waits for it a while and
    then says it is not linked (exit 1, so the mesh trigger tries again),
    never "nothing to do" (which tells the trigger the node is covered)."""
    node = init_node(paths, 8, 'public_ipv4 = "192.0.2.8"\n[wireguard]\ntransport = "4"\n')
    only6 = Route(ipaddress.ip_network("fd10:0:0:2::1/128"), "fe80::2", "wgm0", meshview.RTPROT_BIRD)
    monkeypatch.setattr(netlink, "routes", lambda family, table: [only6] if family == 6 else [])
    monkeypatch.setattr(mesh, "IPV4_GRACE", 0.5)
    report = mesh.build(node)
    assert report.made == [] and list(report.failed) == [2]
    assert "not yet its IPv4 one" in report.failed[2]
    assert report.exit_status == 1
