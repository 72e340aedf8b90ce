"""Link halves that never completed a handshake, removed so the pair's link
can be made again.

A join interrupted between the two sides writing their halves (a kill, a
crash, a power cut), or a peer that lost its half, leaves a half whose
WireGuard device never hears from the other end. Past a bound (`[join]
abandon_after`) such a half is removed, on both sides at once: this side
goes only once the peer answered the signed /disconnect (it removed its
half, or has none: 404), and the mesh pass that did it then makes the link
again.

What counts, and why each rule is there:
- The age runs from when the device last came up (linkops.up_since), or
  from the file's last write if that is later: after a reboot the device
  has had no chance to handshake yet, whatever the file's age.
- A device that cannot be asked (no device, its control socket busy or
  gone) is "unknown", and kept: only a device that answers "no handshake"
  is one that never had one.
- A peer that cannot be told keeps this half, unless the link is known
  never to have had a handshake. Removing it alone would otherwise be a
  guess: the peer may hold a half that once carried traffic (the marker,
  established.py, may be missing here: ICMP filtered, the prober failed, or
  the link predates the markers), which would refuse the unsigned rejoin
  with a 409 until someone ran `disconnect --force` there; so the sweep
  never causes that 409. Kept, the peer's own sweep handles its half, and
  once the peer is back either the link handshakes or the peer answers and
  both halves go. Known never to have had one: the device has run without
  a break or a reload since the link was made (linkops.is_fresh) and still
  has no handshake, so the peer's half never had one either and is removed
  by its own sweep or replaced by a rejoin without proof. That is the half
  a join killed after the serving side answered leaves on the serving side,
  whose joiner has no half and no route to be told through.
- Links made by versions without markers need no migration for the same
  reasons: after a reboot with the peer down, the age starts at the
  device's start, the device is not fresh and the peer cannot be told, so
  nothing is removed; a peer that is up but cannot handshake over the link
  is told, and the link is made again, as it should be.
- The decision is re-checked right before removing, under the allocator's
  lock: the /disconnect can take seconds per address, and meanwhile the
  peer's own sweep, a redo or a replacing /connect (check_claim) may have
  written a new link of the same name. Only the link decided on (same
  public key, still unmarked) is removed; the /disconnect is signed with
  that link's key, so the peer, too, removes only its half of that link.

This runs as the first step of every mesh pass (wgmesh-mesh.timer), not on
a timer of its own: systemd never runs two passes at once, so removing a
half and making the link again never race each other, and the same step is
where a later rule for halves that never handshake (a peer behind NAT) can
choose another way to reach the peer instead of the same link again.
"""

import time
from dataclasses import dataclass

from . import established, join, keys, linkfile, linkkeys, linkops, log
from .errors import WgmeshError
from .node import Node


@dataclass(frozen=True)
class Half:
    name: str
    peer_id: int
    public_key: str  # this side's key when decided on: a new link of the same name has another
    since: float  # the later of the file's last write and the device's start (Unix time)
    last_handshake: float | None  # the device's latest handshake (Unix time); 0: never; None: unknown
    established: bool  # the prober once had an echo answered over it (established.py)
    fresh: bool = False  # the device has run without a break since the link was made (linkops.is_fresh)


def abandoned(halves: list[Half], now: float, bound: float) -> list[Half]:
    """The halves whose device says it never completed a handshake in over
    bound seconds since it came up (pure). A handshake now or ever (the
    durable marker survives the device's restarts), or a device that could
    not be asked, keeps a half; a bound of 0 keeps every half."""
    if bound <= 0:
        return []
    return [half for half in halves
            if half.last_handshake == 0 and not half.established and now - half.since > bound]


def _halves_to_check(node: Node, now: float, bound: float) -> list[Half]:
    """This node's halves that could be abandoned. Only those old enough
    and never marked need their device asked, so a pass over a settled mesh
    asks no device at all."""
    halves = []
    for link in linkfile.load_all(node.paths)[0]:
        try:
            written = node.paths.link_file(link.name).stat().st_mtime
        except OSError:
            continue  # removed meanwhile
        since = max(written, linkops.up_since(node.paths, link.name) or 0.0)
        if now - since <= bound or established.is_established(node.paths, link.name, link.public_key):
            continue
        device = linkops.device_status(node.paths, node.config, link.name)
        handshake = None if device is None else max((peer.last_handshake for peer in device.peers), default=0.0)
        halves.append(Half(link.name, link.peer_id, link.public_key, since, handshake, False,
                           linkops.is_fresh(node.paths, link.name)))
    return halves


def sweep(node: Node, reachable: set[int], now: float | None = None) -> list[Half]:
    """Remove this node's abandoned halves whose peer could be told (see
    the module's text); the halves removed."""
    now = time.time() if now is None else now
    bound = node.config.abandon_after
    found = abandoned(_halves_to_check(node, now, bound) if bound > 0 else [], now, bound)
    return [half for half in found if _remove(node, half, reachable, now)]


def _decided_link(node: Node, half: Half) -> linkfile.Link | None:
    """The link file as it was decided on: the same key, still unmarked;
    None if it is gone, replaced or has carried traffic meanwhile."""
    try:
        link = linkfile.load(node.paths, half.name)
    except (WgmeshError, OSError):
        return None
    if link.public_key != half.public_key or established.is_established(node.paths, half.name, link.public_key):
        return None
    return link


def _signing_key(node: Node, link: linkfile.Link) -> bytes | None:
    """The link's signing key, only if the private key on disk is still
    this link's (a rewrite between reading the two files is caught)."""
    try:
        private_key = linkfile.read_secret(node.paths.link_key(link.name))
        if keys.public_key(private_key) != link.public_key:
            return None
        return linkkeys.signing_key(private_key, link.peer_public_key)
    except (WgmeshError, OSError):
        return None


def _remove(node: Node, half: Half, reachable: set[int], now: float) -> bool:
    link = _decided_link(node, half)
    key = link and _signing_key(node, link)
    if not key:
        log.info(f"{half.name}: changed since it was found abandoned; kept", link=half.name, peer=half.peer_id)
        return False
    # Over the mesh only when it routes there (else each try waits out a
    # timeout every pass); the underlay address a client half joined at
    # needs no route.
    mesh_url = node.api_url_of(half.peer_id)
    urls = [url for url in join.peer_api_urls(node, link) if url != mesh_url or half.peer_id in reachable]
    problem = join.tell_disconnect(node, link, key, urls)
    if problem and not half.fresh:
        log.info(f"{half.name}: never completed a handshake, but node {half.peer_id} could not be told "
                 f"({problem}); kept until it can be (removing this side alone could strand the link)",
                 link=half.name, peer=half.peer_id)
        return False
    with node.allocator.lock():
        gone = not linkfile.exists(node.paths, half.name)
        if gone and not problem:
            # The peer's own sweep (its /disconnect, signed for this link)
            # removed it meanwhile: still this half's one event.
            _report(half, now, problem)
            return True
        if gone or _decided_link(node, half) is None or (problem and not _still_never(node, half.name)):
            log.info(f"{half.name}: changed while node {half.peer_id} was told; kept", link=half.name,
                     peer=half.peer_id)
            return False
        _report(half, now, problem)
        # The file is the one decided on, so no reservation holds its name
        # (reserve() skips names on disk), and none can be taken under this
        # lock: nothing of a new link is touched.
        join.remove_local(node, half.name)
    return True


def _still_never(node: Node, name: str) -> bool:
    """Whether the link is still known never to have had a handshake (the
    peer may have come up while it was being told)."""
    if not linkops.is_fresh(node.paths, name):
        return False
    device = linkops.device_status(node.paths, node.config, name)
    return device is not None and all(peer.last_handshake == 0 for peer in device.peers)


def _report(half: Half, now: float, problem: str | None) -> None:
    age = int(now - half.since)
    alone = (f"; node {half.peer_id} could not be told ({problem}), and the link never had a handshake, "
             f"so its half goes by itself" if problem else "")
    log.event("link-abandoned", f"link {half.name} to node {half.peer_id} never completed a handshake in "
                                f"{age} s; removing it so the mesh makes it again{alone}",
              level="warning", link=half.name, peer=half.peer_id, age=age)
