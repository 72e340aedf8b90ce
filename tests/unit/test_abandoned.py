"""Link halves that never completed a handshake: which are abandoned (a
table over the pure rule), and a sweep that removes them and nothing else."""

import os
import time

import pytest

from wgmesh_common import abandoned, established, linkfile

NOW = 1_000_000.0
BOUND = 150


def half(written_ago: float, handshake: float = 0.0, marked: bool = False) -> abandoned.Half:
    return abandoned.Half("wgm2", 2, NOW - written_ago, handshake, marked)


@pytest.mark.parametrize("case, bound, gone", [
    (half(151), BOUND, True),                            # never a handshake, older than the bound
    (half(150), BOUND, False),                           # exactly the bound: not yet
    (half(10), BOUND, False),                            # young: a join may still be finishing it
    (half(151, handshake=NOW - 5), BOUND, False),        # handshaking now
    (half(9999, handshake=NOW - 9000), BOUND, False),    # a handshake long ago is still one
    (half(151, marked=True), BOUND, False),              # carried traffic before a restart
    (half(9999), 0, False),                              # 0: never removed
])
def test_which_halves_are_abandoned(case, bound, gone):
    assert abandoned.abandoned([case], NOW, bound) == ([case] if gone else [])


def test_a_sweep_removes_an_old_half_without_handshake_once_and_keeps_the_rest(node, link_psk, capfd):
    # wgm2 was written long ago and has no device (so no handshake) and no
    # marker; wgm2v6 is as old but carried traffic once.
    old = time.time() - 1000
    os.utime(node.paths.link_file("wgm2"), (old, old))
    other = linkfile.load(node.paths, "wgm2")
    from dataclasses import replace

    marked = replace(other, name="wgm2v6", family=6, listen_port=other.listen_port + 1)
    linkfile.save(node.paths, marked, linkfile.read_secret(node.paths.link_key("wgm2")),
                  linkfile.read_secret(node.paths.link_psk("wgm2")))
    os.utime(node.paths.link_file("wgm2v6"), (old, old))
    established.mark(node.paths, "wgm2v6")

    removed = abandoned.sweep(node, reachable=set())  # node 2 unreachable: this side only
    assert [h.name for h in removed] == ["wgm2"]
    assert not linkfile.exists(node.paths, "wgm2") and linkfile.exists(node.paths, "wgm2v6")
    events = [line for line in capfd.readouterr().err.splitlines() if "event=link-abandoned" in line]
    assert len(events) == 1 and "link=wgm2 " in events[0] and "peer=2" in events[0] and "age=" in events[0]
    assert abandoned.sweep(node, reachable=set()) == []  # nothing left to remove


def test_a_young_half_is_kept(node, link_psk):
    assert abandoned.sweep(node, reachable=set()) == []
    assert linkfile.exists(node.paths, "wgm2")
