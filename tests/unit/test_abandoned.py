"""Link halves that never completed a handshake: which are abandoned (a
table over the pure rule), and a sweep that removes them and nothing else:
not a half whose device could not be asked, not one whose peer could not be
told, not a link written anew while the peer was being told."""

import os
import time

import pytest

from unit_helpers import make_link, wg
from wgmesh_common import abandoned, established, join, linkfile, linkkeys, linkops
from wgmesh_common.wireguard import DeviceStatus, PeerStatus

NOW = 1_000_000.0
BOUND = 150
KEY = "g6hk3EOx4cQY2ikDCY55Mp4gakfcnHLIphS8nsFBoAc="


def half(since_ago: float, handshake: float | None = 0.0, marked: bool = False) -> abandoned.Half:
    return abandoned.Half("wgm2", 2, KEY, NOW - since_ago, handshake, marked)


@pytest.mark.parametrize("case, bound, gone", [
    (half(151), BOUND, True),                            # never a handshake, up for longer than the bound
    (half(150), BOUND, False),                           # exactly the bound: not yet
    (half(10), BOUND, False),                            # young: a join may still be finishing it
    (half(151, handshake=NOW - 5), BOUND, False),        # handshaking now
    (half(9999, handshake=NOW - 9000), BOUND, False),    # a handshake long ago is still one
    (half(151, marked=True), BOUND, False),              # carried traffic before a restart
    (half(9999, handshake=None), BOUND, False),          # the device could not be asked: unknown, kept
    (half(9999), 0, False),                              # 0: never removed
])
def test_which_halves_are_abandoned(case, bound, gone):
    assert abandoned.abandoned([case], NOW, bound) == ([case] if gone else [])


# ------------------------------------------------------------------ the sweep

def save_link(node, name="wgm2", family=4, port=51820, role="server", endpoint=None, age=1000.0) -> str:
    """A link file with consistent keys, written age seconds ago; its public key."""
    private, peer_private = wg("genkey"), wg("genkey")
    public, peer_public = wg("pubkey", stdin=private + "\n"), wg("pubkey", stdin=peer_private + "\n")
    link = make_link(name=name, family=family, listen_port=port, role=role, public_key=public,
                     peer_public_key=peer_public, **({"endpoint": endpoint} if endpoint else {}))
    linkfile.save(node.paths, link, private, linkkeys.preshared_key(private, peer_public))
    written = time.time() - age
    os.utime(node.paths.link_file(name), (written, written))
    return public


@pytest.fixture
def no_handshake(monkeypatch):
    """Every device answers, and has never had a handshake."""
    monkeypatch.setattr(linkops, "device_status", lambda paths, config, name: DeviceStatus(
        peers=[PeerStatus(public_key=KEY, last_handshake=0.0)]))


class Peer:
    """Node 2's join API as the sweep meets it: answers each /disconnect
    with problem (None: removed its half), after running meanwhile."""

    def __init__(self, monkeypatch, problem: str | None = None, meanwhile=None):
        self.asked: list[tuple[str, str, list[str]]] = []
        self.problem, self.meanwhile = problem, meanwhile
        monkeypatch.setattr(join, "tell_disconnect", self.tell)

    def tell(self, node, link, key, urls):
        self.asked.append((link.name, link.public_key, list(urls)))
        if self.meanwhile:
            self.meanwhile()
        return self.problem


def events(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if "event=link-abandoned" in line]


def test_a_sweep_removes_both_halves_of_an_old_link_without_handshake_and_keeps_the_rest(
        node, no_handshake, monkeypatch, capfd):
    # wgm2 is old, and its device has never had a handshake; wgm2v6 is as
    # old but carried traffic once.
    key = save_link(node)
    save_link(node, "wgm2v6", family=6, port=51821)
    established.mark(node.paths, "wgm2v6", linkfile.load(node.paths, "wgm2v6").public_key)
    peer = Peer(monkeypatch)

    removed = abandoned.sweep(node, reachable={2})
    assert [h.name for h in removed] == ["wgm2"]
    assert peer.asked == [("wgm2", key, [node.api_url_of(2)])]  # told, signed for that very link
    assert not linkfile.exists(node.paths, "wgm2") and linkfile.exists(node.paths, "wgm2v6")
    found = events(capfd)
    assert len(found) == 1 and "link=wgm2 " in found[0] and "peer=2" in found[0] and "age=" in found[0]
    assert abandoned.sweep(node, reachable={2}) == []  # nothing left to remove


def test_a_half_whose_peer_cannot_be_told_is_kept(node, no_handshake, monkeypatch, capfd):
    # Not routed to node 2, and a server half has no underlay address of it:
    # the peer may hold a half that carried traffic, so this one stays.
    save_link(node)
    peer = Peer(monkeypatch, problem="no address to reach it at")
    assert abandoned.sweep(node, reachable=set()) == []
    assert peer.asked[0][2] == []  # no mesh request without a route (it would only time out)
    assert linkfile.exists(node.paths, "wgm2") and events(capfd) == []

    # Routed, but its join API does not answer: kept as well.
    peer = Peer(monkeypatch, problem="timed out")
    assert abandoned.sweep(node, reachable={2}) == []
    assert len(peer.asked) == 1 and linkfile.exists(node.paths, "wgm2")


def test_a_client_half_tells_its_peer_at_the_underlay_address_it_joined_at(node, no_handshake, monkeypatch):
    save_link(node, role="client", endpoint="198.51.100.7:51820")
    peer = Peer(monkeypatch)
    assert [h.name for h in abandoned.sweep(node, reachable=set())] == ["wgm2"]
    assert peer.asked[0][2] == [f"http://198.51.100.7:{node.config.api_port}"]
    assert not linkfile.exists(node.paths, "wgm2")


def test_a_link_written_anew_while_the_peer_is_told_is_not_removed(node, no_handshake, monkeypatch):
    # The decision is made on one link; while its /disconnect is under way
    # the peer's own sweep or a redo replaces it with a new link of the
    # same name (new keys). The new link stays, reservation and all.
    old = save_link(node)
    new = []

    def replace_it():
        join.remove_local(node, "wgm2")
        node.allocator.reserve(2, "server", 4, hold=False)
        new.append(save_link(node, age=0))

    peer = Peer(monkeypatch, meanwhile=replace_it)
    assert abandoned.sweep(node, reachable={2}) == []
    assert peer.asked[0][1] == old  # the request was for the old link only
    assert linkfile.load(node.paths, "wgm2").public_key == new[0] != old
    assert [r.name for r in node.allocator.reservations()] == ["wgm2"]


def test_a_link_gone_while_the_peer_is_told_leaves_a_live_reservation_alone(node, no_handshake, monkeypatch):
    # The file went meanwhile and a join reserved the name: not this
    # sweep's to release.
    save_link(node)

    def gone_and_reserved():
        join.remove_local(node, "wgm2")
        node.allocator.reserve(2, "server", 4, hold=False)

    Peer(monkeypatch, meanwhile=gone_and_reserved)
    abandoned.sweep(node, reachable={2})
    assert [r.name for r in node.allocator.reservations()] == ["wgm2"]


def test_a_link_marked_while_the_peer_is_told_is_not_removed(node, no_handshake, monkeypatch):
    save_link(node)
    Peer(monkeypatch, meanwhile=lambda: established.mark(node.paths, "wgm2", linkfile.load(node.paths, "wgm2").public_key))
    assert abandoned.sweep(node, reachable={2}) == []
    assert linkfile.exists(node.paths, "wgm2")


def test_a_device_that_cannot_be_asked_is_kept(node, monkeypatch):
    # No device to ask here (as with a busy or missing control socket).
    save_link(node)
    peer = Peer(monkeypatch)
    assert linkops.device_status(node.paths, node.config, "wgm2") is None
    assert abandoned.sweep(node, reachable={2}) == []
    assert peer.asked == [] and linkfile.exists(node.paths, "wgm2")


@pytest.mark.parametrize("up_ago, gone", [
    (None, True),    # no start noted (brought up by an older version): the file's age
    (1000, True),    # up since the file was written
    (30, False),     # restarted (a reboot) 30 s ago: it has had no chance to handshake yet
])
def test_the_age_runs_from_the_device_coming_up(node, no_handshake, monkeypatch, up_ago, gone):
    save_link(node, age=1000)
    if up_ago is not None:
        linkops._mark_up(node.paths, "wgm2")
        started = time.time() - up_ago
        os.utime(linkops._up_marker(node.paths, "wgm2"), (started, started))
    Peer(monkeypatch)
    assert bool(abandoned.sweep(node, reachable={2})) == gone
    assert linkfile.exists(node.paths, "wgm2") != gone


def test_a_young_half_is_kept(node, no_handshake, monkeypatch):
    save_link(node, age=10)
    peer = Peer(monkeypatch)
    assert abandoned.sweep(node, reachable={2}) == []
    assert peer.asked == [] and linkfile.exists(node.paths, "wgm2")


# ------------------------------------------------- a link that never had a handshake

def save_fresh_link(node) -> None:
    """A link made long ago whose device has run since, without a break."""
    save_link(node, age=0)
    linkops._mark_up(node.paths, "wgm2")
    long_ago = time.time() - 1000
    os.utime(linkops._up_marker(node.paths, "wgm2"), (long_ago, long_ago))
    os.utime(node.paths.link_file("wgm2"), (long_ago, long_ago))


def test_a_fresh_half_whose_peer_cannot_be_told_goes_alone(node, no_handshake, monkeypatch, capfd):
    # The serving side's half of a join killed after it answered: its device
    # has run since the link was made and never had a handshake, so the
    # peer's half (if any) never had one either and cannot refuse a rejoin.
    save_fresh_link(node)
    assert linkops.is_fresh(node.paths, "wgm2")
    Peer(monkeypatch, problem="no address to reach it at")
    assert [h.name for h in abandoned.sweep(node, reachable=set())] == ["wgm2"]
    assert not linkfile.exists(node.paths, "wgm2")
    assert not linkops._up_marker(node.paths, "wgm2").exists()  # a new link of the name starts fresh
    found = events(capfd)
    assert len(found) == 1 and "could not be told" in found[0]


def test_a_fresh_half_reloaded_while_the_peer_is_told_is_kept(node, no_handshake, monkeypatch):
    save_fresh_link(node)
    Peer(monkeypatch, problem="timed out", meanwhile=lambda: linkops._end_fresh(node.paths, "wgm2"))
    assert abandoned.sweep(node, reachable={2}) == []
    assert linkfile.exists(node.paths, "wgm2")


@pytest.mark.parametrize("story, fresh", [
    ("made", True),             # written, then its device came up for the first time
    ("booted", False),          # an old file whose device came up after a boot
    ("restarted", False),       # its device came up again: a handshake may have been lost
    ("reloaded", False),        # reconfigured in place (a new key): the device's handshakes restart
    ("remade", True),           # removed and made anew under the same name
])
def test_a_device_is_fresh_only_while_it_has_run_unbroken_since_the_link_was_made(node, story, fresh):
    save_link(node, age=1000 if story == "booted" else 0)
    linkops._mark_up(node.paths, "wgm2")
    started = linkops.up_since(node.paths, "wgm2")
    if story == "restarted":
        linkops._mark_up(node.paths, "wgm2")
    if story == "reloaded":
        linkops._end_fresh(node.paths, "wgm2")
        assert linkops.up_since(node.paths, "wgm2") == started  # still up since then
    if story == "remade":
        linkops._end_fresh(node.paths, "wgm2")
        join.remove_local(node, "wgm2")
        save_link(node, age=0)
        linkops._mark_up(node.paths, "wgm2")
    assert linkops.is_fresh(node.paths, "wgm2") == fresh


def test_a_half_the_peer_removed_while_it_was_told_is_reported_once(node, no_handshake, monkeypatch, capfd):
    # Both ends sweep the same link in the same pass: the peer's
    # /disconnect removed this half while this side's was under way.
    save_link(node)
    Peer(monkeypatch, meanwhile=lambda: join.remove_local(node, "wgm2"))
    assert [h.name for h in abandoned.sweep(node, reachable={2})] == ["wgm2"]
    assert len(events(capfd)) == 1


def test_a_fresh_half_that_handshakes_while_the_peer_is_told_is_kept(node, no_handshake, monkeypatch):
    save_fresh_link(node)
    answered = DeviceStatus(peers=[PeerStatus(public_key=KEY, last_handshake=time.time())])
    Peer(monkeypatch, problem="timed out",
         meanwhile=lambda: monkeypatch.setattr(linkops, "device_status", lambda paths, config, name: answered))
    assert abandoned.sweep(node, reachable={2}) == []
    assert linkfile.exists(node.paths, "wgm2")


def test_a_marker_a_late_probe_round_wrote_for_an_older_link_of_the_name_does_not_count(node):
    # A probe round under way while wgm2 was removed marks it after the
    # removal; the next wgm2 (new keys) never carried traffic, and a peer
    # rejoining without the old key must not be refused for it.
    old_key = save_link(node)
    linkfile.delete(node.paths, "wgm2")
    established.forget(node.paths, "wgm2")  # as removing a link does
    established.mark(node.paths, "wgm2", old_key)  # the late round
    save_link(node)
    new = linkfile.load(node.paths, "wgm2")
    assert new.public_key != old_key
    assert not established.is_established(node.paths, "wgm2", new.public_key)
    assert not join.has_carried_traffic(node, new)
    established.mark(node.paths, "wgm2", new.public_key)
    assert established.is_established(node.paths, "wgm2", new.public_key)
    # A marker from before markers held keys counts for any link of its name.
    established.forget(node.paths, "wgm2")
    (node.paths.established_dir / "wgm2").write_bytes(b"")
    assert established.is_established(node.paths, "wgm2", new.public_key)
