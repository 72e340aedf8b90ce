"""wgmesh-notifier notices a dead peer from bird's OSPF neighbour state, well
within 15 s, and the peer's return: one peer-down and one peer-up, each
naming the peer and both its links (a real bird, a real wireguard-go)."""

import subprocess
import time

import pytest

from .helpers import init_two_nodes, report, wait_until

NODE0_URL = "http://198.18.0.2:8080"


def ospf_full(node) -> int:
    return node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors", "wgmesh4"],
                    check=False).stdout.count("Full")


def events(log_path, name: str) -> list[str]:
    return [line for line in log_path.read_text().splitlines() if f"event={name}" in line]


@pytest.mark.ids((0, 2))
def test_a_dead_peer_is_one_peer_down_within_15_s_and_its_return_one_peer_up(netns_lab, tmp_path):
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", NODE0_URL, token])
    assert wait_until(lambda: ospf_full(node0) == 2, timeout=30), "both links never reached OSPF Full"

    log_path = tmp_path / "notifier.log"
    with open(log_path, "w") as log_file:
        notifier = node0.popen(["wgmesh-notifier"], env={"WGMESH_LOG": "stderr"},
                               stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # Its first look at bird is the baseline: a peer already up is no event.
        time.sleep(5)
        assert notifier.poll() is None, log_path.read_text()
        assert events(log_path, "peer-up") == [] and events(log_path, "peer-down") == []

        for name in ("wgm0", "wgm0v6"):
            node2.run(["wgmesh-link", "down", name])
        gone = time.monotonic()
        assert wait_until(lambda: events(log_path, "peer-down"), timeout=15), log_path.read_text()
        noticed = time.monotonic() - gone
        report(f"node 0 logged peer-down for node 2 {noticed:.1f} s after its links went down")
        (down,) = events(log_path, "peer-down")
        assert "peer=2" in down and "links=wgm2,wgm2v6" in down

        for name in ("wgm0", "wgm0v6"):
            node2.run(["wgmesh-link", "up", name])
        assert wait_until(lambda: events(log_path, "peer-up"), timeout=30), log_path.read_text()
        time.sleep(3)
        assert len(events(log_path, "peer-down")) == 1 and len(events(log_path, "peer-up")) == 1
        assert "peer=2" in events(log_path, "peer-up")[0]
        assert notifier.poll() is None, log_path.read_text()
    finally:
        notifier.terminate()
        try:
            notifier.wait(timeout=10)
        except subprocess.TimeoutExpired:
            notifier.kill()
            notifier.wait()
