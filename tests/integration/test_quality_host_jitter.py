"""The jitter penalty on a real two-node mesh (wireguard-go, bird): probe
windows fed to the real cost-writer reach bird's OSPF costs. Jitter both of
node 0's links show in the same rounds is the host's and moves no cost; one
link jittery beside a clean one is penalised. The windows are written, not
measured, so the verdicts do not depend on how busy this machine is."""

import json
import re
import time

import pytest

from .helpers import init_two_nodes, wait_until

NODE0_URL = "http://198.18.0.2:8080"
LINKS = ("wgm2", "wgm2v6")  # node 0's links to node 2, one per underlay family
RTT = 30.0  # ms: a latency cost of 100 + 300
JITTER_PENALTY = 1000
ROUNDS, INTERVAL, ECHOES = 6, 10, 20


def ospf_costs(node) -> dict[str, int]:
    """Interface -> the OSPF cost bird runs it with."""
    text = node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "interface", "wgmesh4"]).stdout
    found = re.findall(r"Interface (\S+) \(.*?Cost: (\d+)", text, re.DOTALL)
    return {name: int(cost) for name, cost in found if name in LINKS}


def ospf_full(node) -> int:
    return node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors", "wgmesh4"],
                    check=False).stdout.count("Full")


def probe_document(jitters: dict[str, float], end: float) -> str:
    """`wgmesh-prober -o - --json` as it would be with each link at its
    jitter in every round (RTTs alternating RTT +- jitter/2), the rounds of
    both links sent together as the prober sends them."""
    windows = []
    for name, jitter in jitters.items():
        rtts = [round(RTT + (jitter / 2 if i % 2 else -jitter / 2), 2) for i in range(ECHOES)]
        rounds = [{"time": end - (ROUNDS - 1 - k) * INTERVAL, "sent": ECHOES, "rtts": rtts} for k in range(ROUNDS)]
        windows.append({"link": name, "peer": 2, "rounds": rounds})
    return json.dumps({"probe": windows})


def cost_pass(node, jitters: dict[str, float]) -> tuple[dict[str, int], str]:
    """One cost-writer pass on the given windows: bird's costs, and the log."""
    result = node.run(["wgmesh-cost-writer", "--json", "-i", "-"], input=probe_document(jitters, time.time()),
                      env={"WGMESH_LOG": "stderr"})
    return ospf_costs(node), result.stderr


@pytest.mark.ids((0, 2))
def test_jitter_on_every_link_is_the_hosts_and_jitter_on_one_is_the_links(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", NODE0_URL, token])
    assert wait_until(lambda: ospf_full(node0) == 2, timeout=30), "both links never reached OSPF Full"

    # A busy host: 18 ms on both links (over the 15 ms threshold) is no penalty.
    costs, log = cost_pass(node0, {"wgm2": 18.0, "wgm2v6": 18.0})
    assert costs == {"wgm2": 400, "wgm2v6": 400}, log
    assert "event=link-degraded" not in log
    status = {row["name"]: row for row in json.loads(node0.run(["wgmesh", "status", "--json"]).stdout)["links"]}
    assert [(status[name]["jitter"], status[name]["host_jitter"], status[name]["link_jitter"]) for name in LINKS] \
        == [(18.0, 18.0, 0.0)] * 2

    # One link at 40 ms beside a clean one: penalised, in bird at once.
    costs, log = cost_pass(node0, {"wgm2": 40.0, "wgm2v6": 1.0})
    assert costs == {"wgm2": 400 + JITTER_PENALTY, "wgm2v6": 400}, log
    assert ("wgm2 (node 2) degraded: jitter (rtt 30 ms, loss 0 %, jitter 40 ms, host jitter 1 ms, "
            "jitter above host 39 ms)") in log
    assert ospf_full(node0) == 2  # the cost moved in place: no adjacency reset
