"""The full mesh, in containers with the .deb installed: nodes joining at
the same moment end with one link per pair and family, clients stay at the
edge, the VXLAN overlay follows the routes, bad joins leave nothing."""

import ipaddress
import time
import tomllib

import pytest

from tests.integration.helpers import interfaces, one_line, pings, report, wait_until
from tests.system.meshcheck import (
    MESH_TABLE,
    in_parallel,
    link_files,
    link_problems,
    mesh_problems,
    overlay_problems,
    reach_problems,
)

NODE0_URL = "http://198.18.0.2:8080"
MESH_PASS = 5  # seconds for a mesh pass to follow what starts one (a new node, a wider cutoff)


def init_all(nodes, transport: str = "auto", public=(0,)) -> str:
    """wgmesh init on every node at once; node 0's join token."""
    def init(node):
        node.run(["wgmesh", "init", str(node.mesh_id)] + (["--public"] if node.mesh_id in public else []))
        if transport != "auto":
            node.run(["wgmesh", "set", "wireguard.transport", transport])

    in_parallel(init, nodes)
    return nodes[0].run(["wgmesh", "token"]).stdout.strip()


def connect_at_once(nodes, url: str, token: str) -> float:
    """Every node runs `wgmesh connect url token` at the same moment;
    the monotonic time the last one returned."""
    start = time.monotonic() + 0.5

    def connect(node):
        time.sleep(max(0.0, start - time.monotonic()))
        node.run(["wgmesh", "connect", url, token], timeout=120)

    in_parallel(connect, nodes)
    return time.monotonic()


def wait_for_mesh(nodes, families, timeout: float, clients=None, detours=()) -> float:
    started = time.monotonic()
    problems = []

    def finished():
        problems[:] = mesh_problems(nodes, families, clients, detours)
        return not problems

    assert wait_until(finished, timeout, interval=0.5), "\n".join(problems)
    return time.monotonic() - started


def node_state(node) -> dict:
    """What a join could leave behind on node."""
    units = node.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "wgmesh-link@*"]).stdout
    reservations = node.host_path("/var/lib/wgmesh/reservations")
    return {
        "links": sorted(link_files(node)),
        "interfaces": sorted(name for name in interfaces(node) if name.startswith("wgm")),
        "units": sorted(line.split()[0] for line in units.splitlines() if line.strip()),
        "reservations": sorted(p.name for p in reservations.glob("*")) if reservations.exists() else [],
    }


def routes_via(node, link_names: set[str], family: int = 4) -> list[str]:
    out = node.run(["ip", f"-{family}", "route", "show", "table", MESH_TABLE, "proto", "bird"]).stdout
    return [line for line in out.splitlines() if set(line.split()) & link_names]


@pytest.mark.ids((0, 2, 4, 6, 8))
def test_five_nodes_joining_at_once_make_one_link_per_pair_and_family(mesh_lab):
    nodes = [mesh_lab[i] for i in (0, 2, 4, 6, 8)]
    token = init_all(nodes)
    connect_at_once(nodes[1:], NODE0_URL, token)
    elapsed = wait_for_mesh(nodes, (4, 6), timeout=30)
    report(f"5 nodes, 4 joining at once, both transport families: 20 links, every loopback (v4+v6) "
           f"reachable from every node {elapsed:.1f} s after the last connect returned")
    # Nothing half-made: no reservation left open, no link unit without its file.
    for node in nodes:
        state = node_state(node)
        assert state["units"] == sorted(f"wgmesh-link@{name}.service" for name in state["links"])
        assert state["interfaces"] == sorted(state["links"] + ["wgmvx4", "wgmvx6"])
        assert state["reservations"] == []
    # Every pair, node 0 included, over both overlays, each reply from the node asked.
    assert overlay_problems(nodes) == []
    # The mesh is stable: further mesh passes change nothing.
    time.sleep(MESH_PASS + 1)
    assert link_problems(nodes, (4, 6)) == []
    assert "nothing to do" in nodes[4].run(["wgmesh", "mesh"]).stdout


@pytest.mark.ids((0, 2, 200))
def test_a_client_reaches_every_node_and_carries_no_transit(mesh_lab):
    node0, node2, client = mesh_lab[0], mesh_lab[2], mesh_lab[200]
    token = init_all([node0, node2, client], transport="4", public=(0, 2))
    node2.run(["wgmesh", "connect", NODE0_URL, token])
    # Told to join both nodes, so that it could carry traffic between them if it were allowed to.
    client.run(["wgmesh", "connect", NODE0_URL, token])
    token2 = node2.run(["wgmesh", "token"]).stdout.strip()
    client.run(["wgmesh", "connect", "http://198.18.2.2:8080", token2])
    nodes = [node0, node2, client]
    wait_for_mesh(nodes, (4,), timeout=30, clients={200: {0, 2}})
    time.sleep(2 * MESH_PASS)
    assert link_problems(nodes, (4,), clients={200: {0, 2}}) == []  # not meshed with beyond what it was told
    assert "client" in node0.run(["wgmesh", "used"]).stdout.split("200")[1].splitlines()[0]

    # Its links cost 10000 more, and it is a stub router: even with the direct
    # link between the two nodes gone, node 0 routes nothing to node 2 through it.
    assert "wgm200" not in node0.run(["ip", "route", "show", "table", MESH_TABLE, "10.0.2.1"]).stdout
    for node, other in ((node0, 2), (node2, 0)):
        node.run(["systemctl", "stop", f"wgmesh-link@wgm{other}.service"])
    assert wait_until(lambda: not pings(node0, "10.0.2.1"), 15)
    time.sleep(3)
    for node in (node0, node2):
        link_net = ipaddress.ip_interface(f"{link_files(node)['wgm200']['local4']}/31").network
        allowed = (ipaddress.ip_network("10.0.200.0/23"), link_net)
        leaked = [r for r in routes_via(node, {"wgm200"})
                  if not any(ipaddress.ip_network(r.split()[0]).subnet_of(a) for a in allowed)]
        assert leaked == [], f"node {node.mesh_id} routes through the client: {leaked}"
        assert routes_via(node, {"wgm200"}), "the client's own routes are there"
    assert reach_problems([client], [node0, node2]) == []  # the client still reaches both


@pytest.mark.ids((0, 2, 4, 6))
def test_the_overlay_follows_the_routes_of_a_node_with_one_link(mesh_lab):
    nodes = [mesh_lab[i] for i in (0, 2, 4)]
    late = mesh_lab[6]
    token = init_all(nodes + [late], transport="4")
    connect_at_once(nodes[1:], NODE0_URL, token)
    wait_for_mesh(nodes, (4,), timeout=30)

    # The late node joins node 0 only: its mesh passes stay off (the timer,
    # and the service vxlan-sync would start when the other nodes appear).
    late.run(["systemctl", "mask", "--now", "wgmesh-mesh.timer", "wgmesh-mesh.service"])
    watchers = {n.mesh_id: n.popen(watch_script("10.0.6.1", "fd10:0:0:6::1"), stdout=-1, text=True)
                for n in nodes[1:]}
    late.run(["wgmesh", "connect", NODE0_URL, token])
    for node_id, watcher in watchers.items():
        timings = parse_watch(watcher.communicate(timeout=60)[0])
        assert "fdb4" in timings and "fdb6" in timings, f"node {node_id}: {timings}"
        report(f"node {node_id} (no direct link): VXLAN entries for the new node "
               f"{timings['fdb4'] - timings['route4']:.2f} s (IPv4) / {timings['fdb6'] - timings['route6']:.2f} s "
               f"(IPv6) after its route appeared")
        assert timings["fdb4"] - timings["route4"] <= 5 and timings["fdb6"] - timings["route6"] <= 5
    assert set(link_files(late)) == {"wgm0"} and "wgm6" not in link_files(nodes[2])
    for node in nodes[1:]:
        assert wait_until(lambda: pings(node, "10.0.251.6"), 10), f"node {node.mesh_id}: no ping over VXLAN"  # noqa: B023
        assert wait_until(lambda: pings(node, "fd10:0:0:fb::6"), 10)  # noqa: B023 - called now
    assert pings(late, "10.0.251.4")

    watchers = {n.mesh_id: n.popen(watch_script("10.0.6.1", "fd10:0:0:6::1", gone=True), stdout=-1, text=True)
                for n in nodes[1:]}
    late.run(["wgmesh", "disconnect", "--yes"])
    for node_id, watcher in watchers.items():
        timings = parse_watch(watcher.communicate(timeout=60)[0])
        assert "fdb4" in timings and "fdb6" in timings, f"node {node_id}: {timings}"
        report(f"node {node_id}: VXLAN entries of the removed node gone {timings['fdb4'] - timings['route4']:.2f} s "
               f"after its route")
        assert timings["fdb4"] - timings["route4"] <= 5 and timings["fdb6"] - timings["route6"] <= 5


@pytest.mark.ids((0, 2, 4))
def test_a_new_node_in_the_routes_starts_a_mesh_pass_without_the_timer(mesh_lab):
    nodes = [mesh_lab[i] for i in (0, 2, 4)]
    token = init_all(nodes, transport="4")
    # No timer anywhere: only vxlan-sync seeing node 2 in node 4's routes
    # (through node 0) can start the pass that links 4 with 2.
    for node in nodes:
        node.run(["systemctl", "mask", "--now", "wgmesh-mesh.timer"])
    nodes[1].run(["wgmesh", "connect", NODE0_URL, token])
    nodes[2].run(["wgmesh", "connect", NODE0_URL, token])
    connected = time.monotonic()
    assert wait_until(lambda: "wgm2" in link_files(nodes[2]) and "wgm4" in link_files(nodes[1]), 30), \
        "no mesh pass linked node 4 with node 2"
    report(f"node 4 linked with node 2 by a pass vxlan-sync started, {time.monotonic() - connected:.1f} s "
           f"after node 4's connect returned (no mesh timer)")
    started = nodes[2].run(["journalctl", "--no-pager", "-o", "cat", "-u", "wgmesh-vxlan-sync.service",
                            "WGMESH_EVENT=mesh-pass-started"]).stdout
    assert "started a mesh pass" in started
    # The pass that made the link (the files are there before it reports).
    assert wait_until(lambda: "linked with node 2" in nodes[2].run(
        ["journalctl", "--no-pager", "-o", "cat", "-u", "wgmesh-mesh.service"]).stdout, 15)
    wait_for_mesh(nodes, (4,), timeout=30)


def watch_script(address4: str, address6: str, gone: bool = False, timeout: int = 40) -> str:
    """A shell loop inside a node that prints when the node's route and its
    VXLAN entries appear (or, with gone, disappear): polling inside the
    container costs milliseconds, polling from the host tens of them."""
    test = "[ -z \"$x\" ]" if gone else "[ -n \"$x\" ]"
    checks = {
        "route4": f"ip -4 route show table {MESH_TABLE} {address4} proto bird",
        "route6": f"ip -6 route show table {MESH_TABLE} {address6} proto bird",
        "fdb4": f"bridge fdb show dev wgmvx4 | grep 'dst {address4} '",
        "fdb6": f"bridge fdb show dev wgmvx6 | grep 'dst {address6} '",
    }
    body = " ".join(f"if [ -z \"${key}\" ]; then x=$({cmd}); if {test}; then {key}=1; echo {key} $(date +%s.%N); fi; fi;"
                    for key, cmd in checks.items())
    done = " && ".join(f"[ -n \"${key}\" ]" for key in checks)
    return f"end=$(($(date +%s)+{timeout})); while [ $(date +%s) -lt $end ]; do {body} if {done}; then break; fi; sleep 0.05; done"


def parse_watch(output: str) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in output.splitlines() if len(line.split()) == 2}


@pytest.mark.ids((0, 2, 4))
def test_collision_self_and_unreachable_joins_fail_in_one_line_and_leave_nothing(mesh_lab):
    node0, node2, impostor = mesh_lab[0], mesh_lab[2], mesh_lab[4]
    node0.run(["wgmesh", "init", "0", "--public"])
    node2.run(["wgmesh", "init", "2"])
    impostor.run(["wgmesh", "init", "2"])  # the ID node 2 already has
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    node2.run(["wgmesh", "connect", NODE0_URL, token])
    assert wait_until(lambda: pings(node0, "10.0.2.1"), 20)
    before = {n.mesh_id: node_state(n) for n in (node0, node2, impostor)}

    cases = [
        (impostor, NODE0_URL, "already used"),               # ID collision
        (node0, NODE0_URL, "this node itself"),                 # connect to oneself
        (node2, "http://198.18.99.2:8080", "cannot reach"),    # nothing there
    ]
    for node, url, word in cases:
        started = time.monotonic()
        result = node.run(["wgmesh", "connect", url, token], check=False, timeout=120)
        took = time.monotonic() - started
        assert result.returncode != 0, (url, result.stdout)
        assert one_line(result.stderr), result.stderr
        assert word in result.stderr, result.stderr
        report(f"node {node.mesh_id} connect {url}: {result.stderr.strip()!r} after {took:.1f} s")
        after = {n.mesh_id: node_state(n) for n in (node0, node2, impostor)}
        assert after == before, f"{url} left something behind"
    assert pings(node0, "10.0.2.1")  # the real node 2 keeps its link


@pytest.mark.ids((0, 2, 4))
def test_proximity_used_graph_and_clean(mesh_lab):
    nodes = node0, node2, node4 = [mesh_lab[i] for i in (0, 2, 4)]
    mesh_lab.lab.impair(0, 4, delay=40)  # node 4 is far from node 0 on the underlay
    token = init_all(nodes, transport="4")
    connect_at_once([node2, node4], NODE0_URL, token)
    # 80 ms round trip on their direct link: quality routing sends 0<->4 through node 2.
    wait_for_mesh(nodes, (4,), timeout=30, detours={(0, 4)})
    assert wait_until(lambda: "wgm2" in node0.run(["ip", "route", "show", "table", MESH_TABLE, "10.0.4.1"]).stdout,
                      40), "the 80 ms link stayed the route to node 4"
    # Its echoes still go and come back over the link itself, not the detour.
    time.sleep(25)
    costs = tomllib.loads(node0.host_path("/run/wgmesh/costs.toml").read_text())["links"]
    assert costs["wgm4"]["rtt"] >= 75 and costs["wgm2"]["rtt"] < 20, costs

    assert [line.split("\t")[:2] for line in node4.run(["wgmesh", "used"]).stdout.splitlines()] == \
        [["0", "node"], ["2", "node"], ["4", "node"]]

    listed = [line.split("\t") for line in node4.run(["wgmesh", "proximity"]).stdout.splitlines()]
    assert [row[0] for row in listed] == ["2", "0"]  # nearest first
    assert listed[1][1] == "198.18.0.2" and float(listed[1][2].split()[0]) >= 80
    out = node4.run(["wgmesh", "proximity", "30"]).stdout
    assert "removed wgm0" in out
    assert "wgm0" not in link_files(node4) and "wgm4" not in link_files(node0)  # both sides
    time.sleep(2 * MESH_PASS + 1)
    assert "wgm0" not in link_files(node4), "a mesh pass linked a node beyond the cutoff"
    assert pings(node4, "10.0.0.1")  # through node 2
    assert "wgm2" in node4.run(["ip", "route", "show", "table", MESH_TABLE, "10.0.0.1"]).stdout

    dot = node0.run(["wgmesh", "graph"]).stdout
    assert dot.startswith("graph wgmesh {")
    for node_id in (0, 2, 4):
        assert f'label="node {node_id}\\n10.0.{node_id}.1"' in dot
    edges = {line.split(" [")[0].strip() for line in dot.splitlines() if " -- " in line}
    assert edges == {'"10.0.0.1" -- "10.0.2.1"', '"10.0.2.1" -- "10.0.4.1"'}
    # Two clean links: the base cost both ways, no penalty left from the new link's first handshake.
    assert '"10.0.2.1" -- "10.0.4.1" [label="100"]' in dot, dot

    node4.run(["wgmesh", "proximity", "0"])  # no limit: the next mesh pass links them again
    assert wait_until(lambda: "wgm0" in link_files(node4) and "wgm4" in link_files(node0), 3 * MESH_PASS)

    node2.kill()  # gone without a word: only `clean` can tell
    mesh_lab.lab.impair(0, 2, loss=1.0)  # and its address with it (the lab keeps its namespace answering)
    assert wait_until(lambda: not pings(node0, "10.0.2.1"), 15)
    assert wait_until(lambda: 'label="down"' in node0.run(["wgmesh", "graph"]).stdout, 15)
    refused = node0.run(["wgmesh", "clean"], check=False)
    assert refused.returncode != 0 and one_line(refused.stderr) and "--yes" in refused.stderr
    assert "wgm2" in link_files(node0)
    out = node0.run(["wgmesh", "clean", "--yes"]).stdout
    assert "removed wgm2" in out and "wgm4" not in out
    assert set(link_files(node0)) == {"wgm4"}
    assert "wgm2" not in node_state(node0)["interfaces"]
