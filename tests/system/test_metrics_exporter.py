"""Debian's prometheus-node-exporter reads wgmesh's textfile: on a two-node
mesh of containers (the .deb installed with apt, the prober and the
cost-writer run by their timer and path unit), scraping node 0's /metrics
shows every wgmesh series with the labels link, peer and family, values
that agree with `wgmesh status --json` within a probe round, and no
textfile parse error."""

import json
import re
import sys

import pytest

from tests.integration.helpers import report, wait_until
from tests.system.conftest import start_mesh_lab
from tests.system.meshcheck import mesh_problems
from tests.system.test_full_mesh import NODE0_URL
from wgmesh_common import metrics

SCRAPE = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=10).read().decode())")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def mesh(deb):
    mesh = start_mesh_lab((0, 2), deb, name_prefix="mx")
    failed = True
    try:
        mesh[0].run(["wgmesh", "init", "0", "--public"])
        mesh[2].run(["wgmesh", "init", "2"])
        token = mesh[0].run(["wgmesh", "token"]).stdout.strip()
        mesh[2].run(["wgmesh", "connect", NODE0_URL, token], timeout=120)
        yield mesh
        failed = False
    finally:
        mesh.lab.close(raise_on_problems=not failed and sys.exc_info()[0] is None)


def scrape(node) -> list[tuple[str, dict, float]]:
    result = node.run(["python3", "-c", SCRAPE], check=False)
    if result.returncode:
        return []
    found = []
    for line in result.stdout.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            found.append((match.group(1), dict(LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return found


def value(found, name: str, link: str | None = None) -> float | None:
    for sample_name, labels, sample in found:
        if sample_name == name and labels.get("link") == link:
            return sample
    return None


def status_links(node) -> dict[str, dict]:
    return {link["name"]: link for link in json.loads(node.run(["wgmesh", "status", "--json"]).stdout)["links"]}


def test_node_exporter_serves_every_wgmesh_series(mesh):
    node0 = mesh[0]
    assert wait_until(lambda: not mesh_problems([mesh[0], mesh[2]]), timeout=60), mesh_problems([mesh[0], mesh[2]])
    assert node0.run(["systemctl", "is-active", "prometheus-node-exporter.service"],
                     check=False).stdout.strip() == "active"
    # Probe rounds every 10 s; the cost-writer writes the file after each.
    # Loss and jitter are shown once the recent rounds (3) are all there.
    assert wait_until(lambda: all(value(scrape(node0), metric, name) is not None
                                  for name in ("wgm2", "wgm2v6")
                                  for metric in ("wgmesh_link_loss_ratio", "wgmesh_link_jitter_seconds")),
                      timeout=90, interval=2), scrape(node0)

    before = status_links(node0)
    found = scrape(node0)
    after = status_links(node0)
    report("node 0's /metrics, wgmesh series:\n" + "\n".join(
        f"{name}{labels} {sample:g}" for name, labels, sample in found if name.startswith("wgmesh_")))

    assert value(found, "node_textfile_scrape_error") == 0, "node_exporter could not parse the textfile"
    names = {name for name, _, _ in found if name.startswith("wgmesh_")}
    assert names == set(metrics.SERIES)
    for name, labels, _ in found:
        if name.startswith("wgmesh_link_"):
            assert labels in ({"link": "wgm2", "peer": "2", "family": "ipv4"},
                              {"link": "wgm2v6", "peer": "2", "family": "ipv6"}), (name, labels)
        elif name.startswith("wgmesh_"):
            assert labels == {}, (name, labels)
    assert value(found, "wgmesh_links") == len(after) == 2
    assert value(found, "wgmesh_reachable_nodes") == 1
    assert value(found, "wgmesh_bird_reconfigurations_total") >= 1

    for name in ("wgm2", "wgm2v6"):
        assert value(found, "wgmesh_link_up", name) == 1
        assert value(found, "wgmesh_link_ospf_neighbor_state", name) == 7
        # Within a probe round: what status showed just before or just after.
        for metric, key, factor in (("wgmesh_link_cost", "cost", 1), ("wgmesh_link_rtt_seconds", "rtt", 1e-3),
                                    ("wgmesh_link_loss_ratio", "loss", 1e-2),
                                    ("wgmesh_link_jitter_seconds", "jitter", 1e-3)):
            shown = value(found, metric, name)
            assert any(shown == pytest.approx(status[name][key] * factor) for status in (before, after)), \
                (metric, name, shown, before[name][key], after[name][key])
        # The device's counters only grow: the file was written before the second status.
        assert 0 < value(found, "wgmesh_link_receive_bytes_total", name) <= after[name]["rx_bytes"]
        assert 0 < value(found, "wgmesh_link_transmit_bytes_total", name) <= after[name]["tx_bytes"]
        assert 0 < value(found, "wgmesh_link_last_handshake_timestamp_seconds", name) <= after[name]["last_handshake"]


def test_every_writer_of_the_textfile_may_write_it(mesh):
    # bird's unit renders its config with the cost-writer before it starts
    # (and on reload), which writes the textfile too: its sandbox must let it.
    for node in (mesh[0], mesh[2]):
        journal = node.run(["journalctl", "-b", "--no-pager", "-o", "cat"], check=False).stdout
        assert "could not write the metrics textfile" not in journal, [
            line for line in journal.splitlines() if "metrics textfile" in line]
