"""The metrics textfile on a real two-node mesh (wireguard-go, bird, the
prober and the cost-writer): every link's figures agree with
`wgmesh status --json`, read moments later."""

import json

import pytest

from .helpers import init_two_nodes, wait_until

NODE0_URL = "http://198.18.0.2:8080"
TEXTFILE = "/run/prom/wgmesh.prom"  # /run is the node's own


def samples(text: str) -> dict[tuple[str, str | None], float]:
    """(metric, link or None) -> value, from the text format."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        link = dict(part.split("=", 1) for part in labels.rstrip("}").split(",")).get("link") if labels else None
        found[(name, link.strip('"') if link else None)] = float(value)
    return found


def status_json(node) -> dict:
    return json.loads(node.run(["wgmesh", "status", "--json"]).stdout)


@pytest.mark.ids((0, 2))
def test_the_textfile_matches_wgmesh_status(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", NODE0_URL, token])
    assert wait_until(lambda: all(link["ospf"].startswith("Full") and link["state"] == "up"
                                  for link in status_json(node0)["links"]) and status_json(node0)["reachable"],
                      timeout=30), "the links never came up with OSPF Full"
    node0.run(["wgmesh", "set", "metrics.textfile", TEXTFILE])
    for _ in range(3):  # the rounds the cost-writer decides on
        node0.run(["wgmesh-prober"])
    node0.run(["wgmesh-cost-writer"])
    text = node0.run(["cat", TEXTFILE]).stdout
    status = status_json(node0)
    print(text)

    found = samples(text)
    assert found[("wgmesh_links", None)] == len(status["links"]) == 2
    assert found[("wgmesh_reachable_nodes", None)] == len(status["reachable"]) == 1
    assert found[("wgmesh_bird_reconfigurations_total", None)] >= 1  # the links were added to a running bird
    assert ("wgmesh_cost_changes_total", None) in found
    for link in status["links"]:
        name = link["name"]
        assert found[("wgmesh_link_up", name)] == 1
        assert found[("wgmesh_link_ospf_neighbor_state", name)] == 7
        assert found[("wgmesh_link_cost", name)] == link["cost"]
        for metric, key, factor in (("wgmesh_link_rtt_seconds", "rtt", 1e-3), ("wgmesh_link_loss_ratio", "loss", 1e-2),
                                    ("wgmesh_link_jitter_seconds", "jitter", 1e-3)):
            if link[key] is None:
                assert (metric, name) not in found
            else:
                assert found[(metric, name)] == pytest.approx(link[key] * factor)
        # The device's counters only grow; status read them a moment later.
        assert 0 < found[("wgmesh_link_receive_bytes_total", name)] <= link["rx_bytes"]
        assert 0 < found[("wgmesh_link_transmit_bytes_total", name)] <= link["tx_bytes"]
        assert 0 < found[("wgmesh_link_last_handshake_timestamp_seconds", name)] <= link["last_handshake"]
    assert found[("wgmesh_link_rtt_seconds", "wgm2")] > 0, "the probed link has a measured RTT"

    # The counts carry over to the next pass.
    before = found[("wgmesh_bird_reconfigurations_total", None)]
    node0.run(["wgmesh-cost-writer"])
    assert samples(node0.run(["cat", TEXTFILE]).stdout)[("wgmesh_bird_reconfigurations_total", None)] >= before
