"""The cost-writer's shell and `wgmesh cost`: probe files and pins in,
costs.toml, bird.conf and journal events out (bird itself is not running
here: the rendered file is what it would be told)."""

import copy
import os
import re
import subprocess
import tomllib
from dataclasses import replace

import pytest

from unit_helpers import VENV_BIN, make_link, random_key
from wgmesh_common import coststate, join, linkfile, pins, probe, routing
from wgmesh_common.quality import QualitySettings, Round
from wgmesh_common.tomlio import dumps

NOW = 1_700_000_000.0
S = QualitySettings()


def write_window(paths, link, rtt=1.0, lost=0, rounds=6, end=NOW, jitter=0.0):
    """jitter: the answered RTTs alternate rtt +- jitter/2, so each round's jitter is exactly that."""
    window = None
    for index in range(rounds):
        samples = [rtt + (jitter / 2 if i % 2 else -jitter / 2) for i in range(S.echoes - lost)] + [None] * lost
        window = probe.add_round(window, link, end - (rounds - 1 - index) * S.interval, samples, S.window_rounds)
    probe.write(paths, window)


def alternating(rtt, jitter):
    """A round's RTTs alternating rtt +- jitter/2: its jitter is exactly that."""
    return tuple(rtt + (jitter / 2 if i % 2 else -jitter / 2) for i in range(S.echoes))


def cost_line(paths, name):
    match = re.search(rf'interface "{name}" {{ type ptp; cost (\d+);', paths.bird_config.read_text())
    return int(match.group(1)) if match else None


@pytest.fixture
def links(node):
    fast, slow = make_link(), make_link(name="wgm4", peer_id=4, offset=6, local4="10.0.0.6", peer4="10.0.0.7",
                                        listen_port=51821)
    for link in (fast, slow):
        linkfile.save(node.paths, link, random_key(), random_key())
    return fast, slow


def test_recost_publishes_measured_costs_and_remembers_them(node, links, capfd):
    fast, slow = links
    write_window(node.paths, fast, rtt=1.0)
    write_window(node.paths, slow, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)
    assert (cost_line(node.paths, "wgm2"), cost_line(node.paths, "wgm4")) == (100, 500)
    states = coststate.load(node.paths)
    assert (states["wgm4"].cost, states["wgm4"].reason, states["wgm4"].rtt) == (500, "latency", 40.0)
    err = capfd.readouterr().err
    assert ("wgm4 (node 4) cost 100 -> 500: latency (rtt 40 ms, loss 0 %, jitter 0 ms, host jitter 0 ms, "
            "jitter above host 0 ms)") in err
    assert "event=cost-change" in err and "link=wgm4" in err and "wgm2 (node 2) cost" not in err
    # A link added or removed later keeps the published costs of the others.
    linkfile.save(node.paths, make_link(name="wgm6", peer_id=6, offset=8, local4="10.0.0.8", peer4="10.0.0.9",
                                        listen_port=51822), random_key(), random_key())
    routing.apply(node.paths, node.config)
    assert (cost_line(node.paths, "wgm4"), cost_line(node.paths, "wgm6")) == (500, 100)


@pytest.mark.parametrize("jitters, penalised", [
    ((18.0, 18.0), set()),  # a busy host: every link at 18 ms is the host's jitter
    ((40.0, 1.0), {"wgm2"}),  # one jittery link among clean ones
])
def test_recost_judges_each_links_jitter_above_the_hosts(node, links, capfd, jitters, penalised):
    for link, jitter in zip(links, jitters):
        write_window(node.paths, link, rtt=30.0, jitter=jitter)
    routing.recost(node.paths, node.config, now=NOW)
    costs = {link.name: cost_line(node.paths, link.name) for link in links}
    # The median RTT alternates around: (30 - jitter/2 + 30 + jitter/2) / 2.
    assert costs == {link.name: 400 + (S.jitter_penalty if link.name in penalised else 0) for link in links}
    states = coststate.load(node.paths)
    # What was measured stays on record, beside the host's figure and the judged one.
    assert [(states[link.name].jitter, states[link.name].host_jitter, states[link.name].link_jitter)
            for link in links] == [(jitter, min(jitters), jitter - min(jitters)) for jitter in jitters]
    err = capfd.readouterr().err
    assert ("event=link-degraded" in err) is bool(penalised)
    if penalised:
        assert ("wgm2 (node 2) degraded: jitter (rtt 30 ms, loss 0 %, jitter 40 ms, host jitter 1 ms, "
                "jitter above host 39 ms)") in err
        assert "link_jitter=39.0" in err


def test_the_same_measurements_again_change_nothing(node, links, capfd):
    for link in links:
        write_window(node.paths, link, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)
    before = (node.paths.bird_config.read_text(), node.paths.bird_config.stat().st_mtime_ns)
    capfd.readouterr()
    write_window(node.paths, links[0], rtt=42.0, end=NOW + 10)  # noise
    routing.recost(node.paths, node.config, now=NOW + 10)
    assert (node.paths.bird_config.read_text(), node.paths.bird_config.stat().st_mtime_ns) == before
    assert "event=" not in capfd.readouterr().err


@pytest.mark.parametrize("content", ["not toml at all", "link = 'wgm4'\n", "link = 'wgm4'\npeer = 4\n[[rounds]]\n"])
def test_a_bad_probe_file_keeps_the_published_cost_with_a_warning(node, links, capfd, content):
    _fast, slow = links
    write_window(node.paths, slow, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)
    probe.probe_path(node.paths, "wgm4").write_text(content)
    capfd.readouterr()
    routing.recost(node.paths, node.config, now=NOW + 10)
    assert cost_line(node.paths, "wgm4") == 500
    warnings = [line for line in capfd.readouterr().err.splitlines() if "wgm4" in line and "warning" in line]
    assert len(warnings) == 1 and "keeps its published cost" in warnings[0], warnings


def test_a_bad_cost_state_entry_starts_that_link_afresh_and_keeps_the_others(node, links, capfd):
    _fast, slow = links
    write_window(node.paths, slow, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)
    good = tomllib.loads(node.paths.costs_file.read_text())
    for key, value in (("latency_cost", "x"), ("loss_until", float("nan")), ("rtt", float("inf")), ("cost", 0),
                       ("cost", True), ("reason", "because"), ("surprise", 1)):
        document = copy.deepcopy(good)
        document["links"]["wgm2"][key] = value
        node.paths.costs_file.write_text(dumps(document))
        states = coststate.load(node.paths)
        assert "wgm2" not in states and states["wgm4"].cost == 500, key
        assert "wgm2" in capfd.readouterr().err
    routing.recost(node.paths, node.config, now=NOW + 10)  # no crash; wgm4 keeps its cost
    assert cost_line(node.paths, "wgm4") == 500 and coststate.load(node.paths)["wgm2"].cost == 100


def test_a_configure_that_did_not_finish_is_retried(node, links):
    routing.apply(node.paths, node.config)
    assert routing.apply(node.paths, node.config) is False
    (node.paths.run_dir / "bird.pending").write_text("")  # a run that died before bird took the file
    assert routing.apply(node.paths, node.config) is True
    assert not (node.paths.run_dir / "bird.pending").exists()


def test_a_prober_that_cannot_open_its_socket_fails_and_writes_no_round(node, links):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env.update(WGMESH_ROOT=str(node.paths.root), WGMESH_LOG="stderr")
    # Without CAP_NET_RAW (capsh drops it from the bounding set and from root).
    result = subprocess.run(["capsh", "--drop=cap_net_raw", "--", "-c", f"{VENV_BIN / 'wgmesh-prober'}"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("wgmesh-prober: error: cannot send echo requests:"), result.stderr
    assert not node.paths.probe_dir.exists() and not (node.paths.run_dir / "probe.round").exists()


def test_a_missing_probe_file_warns_only_for_a_link_measured_before(node, links, capfd):
    _fast, slow = links
    write_window(node.paths, slow, rtt=40.0)
    routing.recost(node.paths, node.config, now=NOW)
    err = capfd.readouterr().err
    assert "wgm2" not in err  # a new link with no probe yet is no problem
    probe.probe_path(node.paths, "wgm4").unlink()
    routing.recost(node.paths, node.config, now=NOW + 10)
    assert "no probe file for wgm4; it keeps its published cost" in capfd.readouterr().err
    assert cost_line(node.paths, "wgm4") == 500


def test_a_pin_survives_a_rewrite_of_the_link_file_and_goes_with_the_link(node, links):
    fast, _ = links
    pins.set_pin(node.paths, "wgm2", 777, peer=2)
    linkfile.save(node.paths, fast, random_key(), random_key())  # as an /update does
    routing.recost(node.paths, node.config, now=NOW)
    assert cost_line(node.paths, "wgm2") == 777
    assert oct(node.paths.pins_file.stat().st_mode & 0o777) == "0o644"
    # After a reboot (no published costs yet) bird starts with the pin, not the base cost.
    node.paths.costs_file.unlink()
    node.paths.bird_config.unlink()
    routing.apply(node.paths, node.config)
    assert cost_line(node.paths, "wgm2") == 777
    join.remove_local(node, "wgm2")
    assert "wgm2" not in pins.load(node.paths)


def test_a_pin_set_for_another_peer_does_not_apply(node, links):
    pins.set_pin(node.paths, "wgm2", 777, peer=6)  # left over from an older link of that name
    routing.recost(node.paths, node.config, now=NOW)
    assert cost_line(node.paths, "wgm2") == 100


def run_wgmesh(root, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env.update(WGMESH_ROOT=str(root), WGMESH_LOG="stderr")
    return subprocess.run([str(VENV_BIN / "wgmesh"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_wgmesh_cost_pins_and_releases(node, links):
    root = node.paths.root
    write_window(node.paths, links[1], rtt=40.0, end=__import__("time").time())
    result = run_wgmesh(root, "cost", "wgm4", "3000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wgm4: cost 3000 (pinned (wgmesh cost))"
    assert cost_line(node.paths, "wgm4") == 3000 and pins.load(node.paths) == {"wgm4": pins.Pin(3000, 4)}
    listing = run_wgmesh(root, "cost").stdout.splitlines()
    assert "wgm4\t3000\tpinned (wgmesh cost)" in listing
    released = run_wgmesh(root, "cost", "wgm4", "auto")
    assert released.stdout.strip() == "wgm4: cost 500 (latency)"
    assert cost_line(node.paths, "wgm4") == 500 and pins.load(node.paths) == {}


@pytest.mark.parametrize("args, message", [
    (["cost", "wgm9", "5"], "wgmesh: error: no link named 'wgm9' (see 'wgmesh status')"),
    (["cost", "../x", "5"], "wgmesh: error: no link named '../x' (see 'wgmesh status')"),
    (["cost", "wgm2"], "wgmesh: error: give a cost (1-65535) or 'auto', like: wgmesh cost wgm2 500"),
    (["cost", "wgm2", "fast"], "wgmesh: error: the cost must be a whole number from 1 to 65535 or 'auto', not 'fast'"),
    (["cost", "wgm2", "0"], "wgmesh: error: a pinned cost must be from 1 to 65535, not 0"),
    (["cost", "wgm2", "65536"], "wgmesh: error: a pinned cost must be from 1 to 65535, not 65536"),
])
def test_wgmesh_cost_bad_input_is_one_line_and_changes_nothing(node, links, args, message):
    result = run_wgmesh(node.paths.root, *args)
    assert result.returncode != 0 and result.stderr.strip() == message
    assert not node.paths.pins_file.exists() and not node.paths.bird_config.exists()


def test_a_bad_pins_file_does_not_stop_a_disconnect(node, links, capfd):
    node.paths.pins_file.parent.mkdir(parents=True, exist_ok=True)
    node.paths.pins_file.write_text("[pins]\nwgm2 = 3\n")
    assert join.remove_local(node, "wgm2") is True
    assert not linkfile.exists(node.paths, "wgm2")
    assert "the pin of wgm2 stays" in capfd.readouterr().err


def test_a_bad_pins_file_is_ignored_with_a_warning_not_a_crash(node, links, capfd):
    node.paths.pins_file.parent.mkdir(parents=True, exist_ok=True)
    node.paths.pins_file.write_text("[pins.wgm2]\ncost = 'high'\npeer = 2\n")
    routing.recost(node.paths, node.config, now=NOW)
    assert "the pin of wgm2 must be a cost from 1 to 65535; ignoring the pins" in capfd.readouterr().err
    assert cost_line(node.paths, "wgm2") == 100


def test_prober_output_pipes_into_a_dry_run(node, links):
    """DESIGN principle 3: prober -o - | cost-writer -i - --dry-run."""
    window = None
    for index in range(6):
        window = probe.add_round(window, links[1], __import__("time").time() - 50 + index * 10, [40.0] * 20, 6)
    document = {"probe": [probe.to_document(window)]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env.update(WGMESH_ROOT=str(node.paths.root), WGMESH_LOG="stderr")
    result = subprocess.run([str(VENV_BIN / "wgmesh-cost-writer"), "-i", "-", "--dry-run"], input=dumps(document),
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'name = "wgm4"\npeer = 4\ncost = 500\nreason = "latency"' in result.stdout
    assert not node.paths.bird_config.exists() and not node.paths.costs_file.exists()
    bad = subprocess.run([str(VENV_BIN / "wgmesh-cost-writer"), "-i", "-", "--dry-run"], input="probe = 3\n",
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert bad.stderr.strip() == ("wgmesh-cost-writer: error: <stdin>: expected a list of probe windows under "
                                  "'probe' (wgmesh-prober -o -)")


def test_decide_all_counts_each_peer_once_in_the_hosts_jitter(node):
    # Two peers with two links each at 45 ms, one link at 40 ms and a
    # clean one: four peers, so the host's jitter is the clean one's.
    jitters = {("wgm2", 2): 1.0, ("wgm4", 4): 40.0, ("wgm6", 6): 45.0, ("wgm6v6", 6): 45.0,
               ("wgm8", 8): 45.0, ("wgm8v6", 8): 45.0}
    links = [make_link(name=name, peer_id=peer) for name, peer in jitters]
    windows = {name: [Round(NOW - (5 - k) * S.interval, S.echoes, alternating(30.0, jitter)) for k in range(6)]
               for (name, _), jitter in jitters.items()}
    decisions = {item.link.name: item.decision for item in routing.decide_all(node.paths, node.config, links,
                                                                              windows, NOW)}
    assert decisions["wgm4"].state.penalties == ("jitter",)
    assert decisions["wgm2"].state.penalties == ()


def test_a_cost_state_written_before_the_judged_jitter_existed_still_reads(node):
    node.paths.costs_file.parent.mkdir(parents=True, exist_ok=True)
    node.paths.costs_file.write_text('[links.wgm2]\ncost = 400\nreason = "latency"\njitter = 30.0\nhost_jitter = 0.0\n')
    state = coststate.load(node.paths)["wgm2"]
    assert (state.cost, state.jitter, state.host_jitter, state.link_jitter) == (400, 30.0, 0.0, None)
    coststate.save(node.paths, {"wgm2": replace(state, link_jitter=12.5)})
    assert coststate.load(node.paths)["wgm2"].link_jitter == 12.5
