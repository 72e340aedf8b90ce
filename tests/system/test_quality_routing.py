"""Quality routing in containers with the .deb: latency, loss and jitter on
the underlay move node 0's route to node 2 onto the path through node 4 and
back; steady noise moves nothing; cost changes keep adjacencies and TCP
streams; a reboot keeps pins and forgets penalties.

One booted dual-stack triangle 0, 2, 4 is shared by the whole module, in
the order the tests are written; each test leaves the links clean and the
routes settled. The underlay's random generator is seeded (the lab prints
the seed; WGMESH_LAB_SEED repeats a run)."""

import json
import re
import sys
import threading
import time

import pytest

from tests.integration.helpers import report, wait_until
from tests.system.conftest import start_mesh_lab
from tests.system.qualitycheck import (
    DIRECT,
    PAIRS,
    VIA_4,
    build_triangle,
    costs,
    devices_to,
    events,
    ospf_not_full,
    settle,
    wait_route,
)

HOLD_DOWN = 30  # seconds; shortened from the default 120 with `wgmesh set`
REROUTE_WITHIN = 30
RETURN_WITHIN = 60


@pytest.fixture(scope="module")
def triangle(deb):
    mesh = start_mesh_lab((0, 2, 4), deb, name_prefix="qr")
    failed = True
    try:
        build_triangle(mesh, {"quality.hold_down": str(HOLD_DOWN)})
        yield mesh
        failed = False
    finally:
        mesh.lab.close(raise_on_problems=not failed and sys.exc_info()[0] is None)


def clear(lab) -> None:
    for a, b in PAIRS:
        lab.impair(a, b)


@pytest.fixture(autouse=True)
def clean_underlay(triangle):
    """A test that fails half-way must not leave its impairment to the next."""
    yield
    clear(triangle.lab)


def impaired_reroute(triangle, what: str, **impairment) -> tuple[float, dict]:
    """Impair 0<->2 and wait for node 0 to route to node 2 via node 4:
    (seconds it took, node 0's `wgmesh status --json` then)."""
    node0 = triangle[0]
    started = time.time()
    triangle.lab.impair(0, 2, **impairment)
    away = wait_route(node0, 2, VIA_4, REROUTE_WITHIN)
    degraded = events(node0, "cost-change", started)
    assert away is not None, (f"{what}: node 0 still routes to node 2 via {devices_to(node0, 2)} after "
                              f"{REROUTE_WITHIN} s; costs: {costs(node0)}")
    assert degraded and {e["WGMESH_LINK"] for e in degraded} & DIRECT, degraded
    status = json.loads(node0.run(["wgmesh", "status", "--json"]).stdout)
    return away, status


def test_steady_noise_changes_no_cost_and_reconfigures_nothing(triangle):
    nodes = [triangle[i] for i in (0, 2, 4)]
    for a, b in PAIRS:
        triangle.lab.impair(a, b, jitter=2, loss=0.01)
    started = time.time()
    time.sleep(120)
    changes = {n.mesh_id: events(n, "cost-change", started) for n in nodes}
    reconfigured = {n.mesh_id: events(n, "bird-reconfigured", started) for n in nodes}
    clear(triangle.lab)
    report(f"2 min of 2 ms jitter and 1 % loss each way on every pair: "
           f"{sum(map(len, changes.values()))} cost changes, {sum(map(len, reconfigured.values()))} bird "
           f"reconfigurations (seed {triangle.lab.underlay.seed})")
    assert all(not found for found in changes.values()), {k: [e["MESSAGE"] for e in v] for k, v in changes.items()}
    assert all(not found for found in reconfigured.values())
    # The noise was measured, not missed: the links show it.
    assert any(state.get("loss", 0) > 0 for node in nodes for state in costs(node).values())


def test_150_ms_more_latency_moves_the_route_and_back(triangle):
    node0 = triangle[0]
    away, status = impaired_reroute(triangle, "+150 ms", delay=75)
    row = next(r for r in status["links"] if r["name"] == "wgm2")
    # Published as soon as the median of the recent rounds moved: by then the
    # direct link costs more than the two hops through node 4.
    assert row["rtt"] > 50 and row["why"] == "latency" and row["cost"] > 2 * 110, row
    triangle.lab.impair(0, 2)
    back = wait_route(node0, 2, DIRECT, RETURN_WITHIN)
    report(f"+150 ms on 0<->2: node 0 routes via node 4 after {away:.1f} s, direct again {back} s after the "
           f"delay was removed")
    assert back is not None, f"still via {devices_to(node0, 2)}: {costs(node0)}"
    settle([triangle[i] for i in (0, 2, 4)])


def test_20_percent_loss_moves_the_route_and_the_penalty_holds_for_the_hold_down(triangle):
    node0 = triangle[0]
    away, status = impaired_reroute(triangle, "20 % loss", loss=0.2)
    row = next(r for r in status["links"] if r["name"] == "wgm2")
    assert row["why"].startswith("loss penalty until ") and "loss" in row["penalties"], row
    healed = time.monotonic()
    triangle.lab.impair(0, 2)
    back = wait_route(node0, 2, DIRECT, HOLD_DOWN + RETURN_WITHIN)
    report(f"20 % loss each way on 0<->2: node 0 routes via node 4 after {away:.1f} s; direct again "
           f"{back} s after the loss stopped (hold-down {HOLD_DOWN} s)")
    assert back is not None, f"still via {devices_to(node0, 2)}: {costs(node0)}"
    assert back >= HOLD_DOWN, f"the penalty was lifted {back:.1f} s after the loss stopped"
    recovered = events(node0, "link-recovered", time.time() - (time.monotonic() - healed))
    assert {e["WGMESH_LINK"] for e in recovered} & DIRECT
    settle([triangle[i] for i in (0, 2, 4)])


def test_40_ms_jitter_moves_the_route(triangle):
    node0 = triangle[0]
    away, status = impaired_reroute(triangle, "40 ms jitter", jitter=40)
    row = next(r for r in status["links"] if r["name"] == "wgm2")
    assert "jitter" in row["penalties"] and row["jitter"] >= 15, row
    triangle.lab.impair(0, 2)
    back = wait_route(node0, 2, DIRECT, HOLD_DOWN + RETURN_WITHIN)
    report(f"40 ms jitter (sd each way) on 0<->2: node 0 routes via node 4 after {away:.1f} s; direct again "
           f"{back} s after it stopped")
    assert back is not None
    settle([triangle[i] for i in (0, 2, 4)])


RECEIVER = r"""
import socket, sys, time
server = socket.create_server(("10.0.2.1", 7000))
print("listening", flush=True)
conn, _ = server.accept()
expected, total, longest, last, at = 0, 0, 0.0, time.monotonic(), 0.0
while True:
    try:
        data = conn.recv(65536)
    except ConnectionResetError:
        print("reset", flush=True); break
    now = time.monotonic()
    if not data:
        break
    if now - last > longest:
        longest, at = now - last, time.time() - (now - last)
    last = now
    for byte in data:
        if byte != expected:
            print(f"corrupt at {total}", flush=True); sys.exit(1)
        expected = (expected + 1) % 251
        total += 1
print(f"received {total} longest-gap {longest:.3f} from {at:.3f}", flush=True)
"""

SENDER = r"""
import select, socket, sys, time
block = bytes(i % 251 for i in range(251 * 64))
conn = socket.create_connection(("10.0.2.1", 7000), timeout=10)
sent = 0
print("connected", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:  # until told to stop
    conn.sendall(block)
    sent += len(block)
    time.sleep(0.01)
conn.shutdown(socket.SHUT_WR)
print(f"sent {sent}", flush=True)
"""


def tcp_retransmissions(node) -> int:
    lines = [line.split() for line in node.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("RetransSegs")])


class AdjacencyWatch(threading.Thread):
    """Polls node's OSPF neighbours every half second while a test runs: an
    adjacency that dropped (dead interval 4 s) cannot slip between polls."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.seen, self.polls = node, [], 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(0.5):
            self.seen += ospf_not_full(self.node)
            self.polls += 1

    def stop(self) -> list[str]:
        self.stopping.set()
        self.join(10)
        return self.seen


def test_a_tcp_stream_survives_ten_cost_changes_with_every_adjacency_full(triangle):
    node0, node2 = triangle[0], triangle[2]
    receiver = node2.popen(["python3", "-c", RECEIVER], stdout=-1, stderr=-1, text=True)
    sender = None
    try:
        assert receiver.stdout.readline().strip() == "listening"
        sender = node0.popen(["python3", "-c", SENDER], stdin=-1, stdout=-1, stderr=-1, text=True)
        assert sender.stdout.readline().strip() == "connected"
        started = time.time()
        watch = AdjacencyWatch(node0)
        watch.start()
        flips, moments = [], []
        retransmitted = tcp_retransmissions(node0)
        time.sleep(2)
        for turn in range(5):
            for pin, devices in (("5000", VIA_4), ("auto", DIRECT)):
                moments.append(time.time())
                for name in sorted(DIRECT):
                    node0.run(["wgmesh", "cost", name, pin])
                flips.append(wait_route(node0, 2, devices, 15))
                time.sleep(2)
        retransmitted = tcp_retransmissions(node0) - retransmitted
        not_full = watch.stop()
        sent_out, _ = sender.communicate("stop\n", timeout=60)
        received_out, received_err = receiver.communicate(timeout=60)
    finally:
        for process in (sender, receiver):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    changes = [e for e in events(node0, "cost-change", started) if e["WGMESH_LINK"] in DIRECT]
    away = [e for e in changes if e["WGMESH_NEW"] == "5000"]
    back = [e for e in changes if e["WGMESH_OLD"] == "5000"]
    report(f"TCP stream across {len(away) + len(back)} pinned cost changes (5 away, 5 back, on both links to "
           f"node 2): route flips took {', '.join(f'{f:.1f}' if f is not None else 'never' for f in flips)} s "
           f"(at {', '.join(f'{m:.1f}' for m in moments)}); receiver: {received_out.strip()}; "
           f"{retransmitted} TCP segments retransmitted; adjacencies polled {watch.polls} times")
    assert None not in flips
    assert len(away) == len(back) == 10, [e["MESSAGE"] for e in changes]
    assert not_full == [], not_full
    sent = int(sent_out.split()[1])
    received = re.match(r"received (\d+) longest-gap ([\d.]+)", received_out.strip())
    assert received, (received_out, received_err)
    assert int(received.group(1)) == sent, "bytes were lost"
    assert float(received.group(2)) < 5.0, "the stream stalled"


def test_a_reboot_keeps_pins_and_forgets_penalties(triangle):
    node4 = triangle[4]
    node4.run(["wgmesh", "set", "quality.hold_down", "3600"])
    node4.run(["wgmesh", "cost", "wgm0", "4321"])
    triangle.lab.impair(4, 2, loss=0.3)
    assert wait_until(lambda: costs(node4).get("wgm2", {}).get("loss_until"), 60, interval=1), costs(node4)
    triangle.lab.impair(4, 2)
    node4.poweroff()
    node4.boot()
    node4.wait_running()
    assert wait_until(lambda: "rtt" in costs(node4).get("wgm2", {}), 90, interval=1), costs(node4)
    state = costs(node4)
    assert not state["wgm2"].get("loss_until"), "a penalty survived the reboot"
    assert state["wgm0"]["cost"] == 4321 and state["wgm0"]["reason"] == "manual"
    assert 'interface "wgm0" { type ptp; cost 4321;' in node4.host_path("/run/wgmesh/bird.conf").read_text()
    assert "pinned" in node4.run(["wgmesh", "status"]).stdout
    node4.run(["wgmesh", "cost", "wgm0", "auto"])
    node4.run(["wgmesh", "set", "quality.hold_down", str(HOLD_DOWN)])
