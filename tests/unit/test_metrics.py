"""The node_exporter textfile: its exact text, Prometheus' naming rules, where
it goes, the counters behind it, and the cost-writer that writes it."""

import os
import re
import subprocess
import time

import pytest

from unit_helpers import VENV_BIN, make_link, random_key
from wgmesh_common import config, counters, linkfile, metrics, probe, routing
from wgmesh_common.counters import Counters
from wgmesh_common.errors import ConfigError
from wgmesh_common.quality import QualitySettings
from wgmesh_common.status import LinkRow

NOW = 1_700_000_000.0
S = QualitySettings()


def write_window(paths, link, rtt, end=NOW):
    window = None
    for index in range(S.window_rounds):
        window = probe.add_round(window, link, end - (S.window_rounds - 1 - index) * S.interval, [rtt] * S.echoes,
                                 S.window_rounds)
    probe.write(paths, window)

MEASURED = LinkRow("wgm2", 2, "IPv4", "192.0.2.2:51820", "up", "5s ago", "Full/PtP", rtt=12.3, loss=5.0,
                   jitter=0.7, host_jitter=0.5, link_jitter=0.25, cost=223, why="latency", last_handshake=1_700_000_000.25, rx_bytes=123456,
                   tx_bytes=654321)
# Down, never measured, its device unreadable: only what is known is shown.
UNKNOWN = LinkRow("wgm4v6", 4, "IPv6", "-", "down", "never", "-")

GOLDEN = """\
# HELP wgmesh_link_rtt_seconds Round trip time over the link, the cost-writer's recent median.
# TYPE wgmesh_link_rtt_seconds gauge
wgmesh_link_rtt_seconds{link="wgm2",peer="2",family="ipv4"} 0.0123
# HELP wgmesh_link_loss_ratio Share of the recent echoes over the link that went unanswered (0-1).
# TYPE wgmesh_link_loss_ratio gauge
wgmesh_link_loss_ratio{link="wgm2",peer="2",family="ipv4"} 0.05
# HELP wgmesh_link_jitter_seconds Jitter of the link: mean difference between successive round trips.
# TYPE wgmesh_link_jitter_seconds gauge
wgmesh_link_jitter_seconds{link="wgm2",peer="2",family="ipv4"} 0.0007
# HELP wgmesh_link_host_jitter_seconds The host's own jitter in the link's rounds (its quietest peers'), the median \
over the recent rounds.
# TYPE wgmesh_link_host_jitter_seconds gauge
wgmesh_link_host_jitter_seconds{link="wgm2",peer="2",family="ipv4"} 0.0005
# HELP wgmesh_link_jitter_above_host_seconds Jitter of the link above the host's own: the median over the recent \
rounds of each round's difference, what the jitter penalty judges.
# TYPE wgmesh_link_jitter_above_host_seconds gauge
wgmesh_link_jitter_above_host_seconds{link="wgm2",peer="2",family="ipv4"} 0.00025
# HELP wgmesh_link_cost OSPF cost this node publishes for the link.
# TYPE wgmesh_link_cost gauge
wgmesh_link_cost{link="wgm2",peer="2",family="ipv4"} 223
# HELP wgmesh_link_up 1 when the link's interface is up and its last WireGuard handshake is under 180 s old.
# TYPE wgmesh_link_up gauge
wgmesh_link_up{link="wgm2",peer="2",family="ipv4"} 1
wgmesh_link_up{link="wgm4v6",peer="4",family="ipv6"} 0
# HELP wgmesh_link_ospf_neighbor_state OSPFv2 neighbour state on the link: 0 none or down, 1 attempt, 2 init, \
3 2-way, 4 exstart, 5 exchange, 6 loading, 7 full.
# TYPE wgmesh_link_ospf_neighbor_state gauge
wgmesh_link_ospf_neighbor_state{link="wgm2",peer="2",family="ipv4"} 7
wgmesh_link_ospf_neighbor_state{link="wgm4v6",peer="4",family="ipv6"} 0
# HELP wgmesh_link_last_handshake_timestamp_seconds Unix time of the link's last WireGuard handshake (0: never).
# TYPE wgmesh_link_last_handshake_timestamp_seconds gauge
wgmesh_link_last_handshake_timestamp_seconds{link="wgm2",peer="2",family="ipv4"} 1700000000.25
# HELP wgmesh_link_receive_bytes_total Bytes received from the peer by the WireGuard device.
# TYPE wgmesh_link_receive_bytes_total counter
wgmesh_link_receive_bytes_total{link="wgm2",peer="2",family="ipv4"} 123456
# HELP wgmesh_link_transmit_bytes_total Bytes sent to the peer by the WireGuard device.
# TYPE wgmesh_link_transmit_bytes_total counter
wgmesh_link_transmit_bytes_total{link="wgm2",peer="2",family="ipv4"} 654321
# HELP wgmesh_links Links of this node (one per peer and transport family).
# TYPE wgmesh_links gauge
wgmesh_links 2
# HELP wgmesh_reachable_nodes Other nodes whose loopback this node has a route to.
# TYPE wgmesh_reachable_nodes gauge
wgmesh_reachable_nodes 1
# HELP wgmesh_bird_reconfigurations_total Times bird was reconfigured since the node booted.
# TYPE wgmesh_bird_reconfigurations_total counter
wgmesh_bird_reconfigurations_total 3
# HELP wgmesh_cost_changes_total Published link cost changes since the node booted.
# TYPE wgmesh_cost_changes_total counter
wgmesh_cost_changes_total 2
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[str, str], list[tuple[str, dict, float]]]:
    """HELP and TYPE per metric, and the samples, of Prometheus' text format;
    fails on any line that is none of them."""
    helps, types, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, text_ = line[7:].split(" ", 1)
            helps[name] = text_
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert match.group(1) in types, f"{match.group(1)} has a sample before its TYPE"
            samples.append((match.group(1), dict(LABEL.findall(match.group(3) or "")), float(match.group(4))))
    return helps, types, samples


def test_the_textfile_is_exactly_the_golden_text():
    assert metrics.render([UNKNOWN, MEASURED], 1, Counters(bird_reconfigurations=3, cost_changes=2)) == GOLDEN


def test_every_series_follows_prometheus_naming():
    helps, types, samples = parse(metrics.render([MEASURED, UNKNOWN], 1, Counters(3, 2)))
    assert set(helps) == set(types) == set(metrics.SERIES), "every metric has HELP and TYPE, and only those"
    for name, kind in types.items():
        assert kind in ("gauge", "counter")
        assert name.startswith("wgmesh_")
        assert (kind == "counter") == name.endswith("_total"), f"{name}: counters and only counters end in _total"
        # Base units only: no ms, percent, kilobytes or minutes in a name.
        assert not re.search(r"_(ms|milliseconds|percent|kilobytes|kb|minutes|bits)(_|$)", name), name
    for name, labels, _ in samples:
        expected = {"link", "peer", "family"} if name.startswith("wgmesh_link_") else set()
        assert set(labels) == expected, f"{name} has labels {sorted(labels)}"


def test_figures_are_in_base_units():
    _, _, samples = parse(metrics.render([MEASURED], 1, Counters()))
    value = {name: sample for name, _, sample in samples}
    assert value["wgmesh_link_rtt_seconds"] == pytest.approx(MEASURED.rtt / 1000)
    assert value["wgmesh_link_jitter_seconds"] == pytest.approx(MEASURED.jitter / 1000)
    assert value["wgmesh_link_loss_ratio"] == pytest.approx(MEASURED.loss / 100)


def test_label_values_are_escaped():
    odd = LinkRow('we"ird\\', 6, "IPv4", "-", "up", "-", "-")
    line = next(l for l in metrics.render([odd], 0, Counters()).splitlines() if l.startswith("wgmesh_link_up"))
    assert line == 'wgmesh_link_up{link="we\\"ird\\\\",peer="6",family="ipv4"} 1'


@pytest.mark.parametrize("text, number", [("Full/PtP", 7), ("Full", 7), ("Init/PtP", 2), ("2-Way/DR", 3),
                                          ("ExStart/PtP", 4), ("-", 0), ("", 0), ("Bogus/PtP", 0)])
def test_ospf_states_in_rfc_order(text, number):
    assert metrics.ospf_state_number(text) == number


def test_where_the_textfile_goes(paths):
    assert metrics.textfile_path(paths, None) is None  # no node_exporter directory: none
    directory = paths.root / "var/lib/prometheus/node-exporter"
    directory.mkdir(parents=True)
    assert metrics.textfile_path(paths, None) == directory / "wgmesh.prom"
    assert metrics.textfile_path(paths, "") is None  # switched off
    assert str(metrics.textfile_path(paths, "/srv/prom/mesh.prom")) == "/srv/prom/mesh.prom"


@pytest.mark.parametrize("value", ["relative.prom", "/var/lib/wgmesh.txt", "/"])
def test_a_bad_textfile_setting_is_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=r"metrics\.textfile must be an absolute path ending in \.prom") as error:
        config.parse({"metrics": {"textfile": value}})
    assert "\n" not in str(error.value)


def test_textfile_settings_that_are_fine():
    assert config.parse({}).metrics_textfile is None
    assert config.parse({"metrics": {"textfile": ""}}).metrics_textfile == ""
    assert config.parse({"metrics": {"textfile": "/srv/x.prom"}}).metrics_textfile == "/srv/x.prom"


@pytest.fixture
def links(node):
    fast = make_link()
    slow = make_link(name="wgm4", peer_id=4, offset=6, local4="10.0.0.6", peer4="10.0.0.7", listen_port=51821)
    for link in (fast, slow):
        linkfile.save(node.paths, link, random_key(), random_key())
    return fast, slow


def test_the_cost_pass_counts_cost_changes_across_runs(node, links):
    fast, slow = links
    write_window(node.paths, fast, rtt=1.0)
    write_window(node.paths, slow, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)  # wgm4: 100 -> 500; wgm2 stays
    assert counters.load(node.paths) == Counters(bird_reconfigurations=0, cost_changes=1)
    routing.recost(node.paths, node.config, now=NOW + 1)  # nothing moved
    assert counters.load(node.paths).cost_changes == 1
    write_window(node.paths, slow, rtt=1.0, end=NOW + 60)
    routing.recost(node.paths, node.config, now=NOW + 60)  # wgm4: back to 100
    assert counters.load(node.paths).cost_changes == 2


def test_a_bad_counters_file_starts_from_zero_with_a_warning(paths, capfd):
    counters.path(paths).parent.mkdir(parents=True)
    counters.path(paths).write_text('cost_changes = "many"\n')
    assert counters.load(paths) == Counters()
    assert "cost_changes must be a count" in capfd.readouterr().err
    assert counters.add(paths, cost_changes=2) == Counters(cost_changes=2)


def run_cost_writer(node):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env.update(WGMESH_ROOT=str(node.paths.root), WGMESH_LOG="stderr")
    return subprocess.run([str(VENV_BIN / "wgmesh-cost-writer")], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_cost_writer_writes_the_textfile_where_node_exporter_reads(node, links):
    for link in links:
        write_window(node.paths, link, rtt=40.0 if link.name == "wgm4" else 1.0, end=time.time())
    result = run_cost_writer(node)
    assert result.returncode == 0, result.stderr
    assert not list(node.paths.root.rglob("*.prom")), "no node_exporter directory: no textfile"

    directory = node.paths.root / "var/lib/prometheus/node-exporter"
    directory.mkdir(parents=True)
    result = run_cost_writer(node)
    assert result.returncode == 0, result.stderr
    textfile = directory / "wgmesh.prom"
    assert oct(textfile.stat().st_mode & 0o777) == "0o644"  # node_exporter runs as its own user
    assert [p.name for p in directory.iterdir()] == ["wgmesh.prom"], "no temporary file left behind"
    _, _, samples = parse(textfile.read_text())
    cost = {labels["link"]: value for name, labels, value in samples if name == "wgmesh_link_cost"}
    assert cost == {"wgm2": 100, "wgm4": 500}
    assert ("wgmesh_links", {}, 2.0) in samples
    assert ("wgmesh_cost_changes_total", {}, 1.0) in samples
    # Neither link has an interface here: down, and no device figures.
    assert {value for name, _, value in samples if name == "wgmesh_link_up"} == {0.0}
    assert not [name for name, _, _ in samples if name.endswith("_bytes_total")]


def test_a_textfile_that_cannot_be_written_never_fails_the_cost_pass(node, links):
    blocker = node.paths.root / "not-a-directory"
    blocker.write_text("")
    with open(node.paths.config_file, "a") as handle:
        handle.write(f'\n[metrics]\ntextfile = "{blocker}/wgmesh.prom"\n')
    write_window(node.paths, links[1], rtt=40.0, end=time.time())
    result = run_cost_writer(node)
    assert result.returncode == 0, result.stderr
    assert f"could not write the metrics textfile {blocker}/wgmesh.prom" in result.stderr
    assert 'interface "wgm4" { type ptp; cost 500;' in node.paths.bird_config.read_text()
