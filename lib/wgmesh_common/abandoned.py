"""Link halves that never completed a handshake, removed so the pair's link
can be made again.

A join interrupted between the two sides writing their halves (a kill, a
crash, a power cut), or a peer that lost its half, leaves a half whose
WireGuard device never hears from the other end. Past a bound (`[join]
abandon_after`) such a half is removed on both sides where the peer can be
told, on this side only where it cannot (the peer's own pass removes its
half), and the mesh pass that did it then makes the link again.

This runs as the first step of every mesh pass (wgmesh-mesh.timer), not on
a timer of its own: systemd never runs two passes at once, so removing a
half and making the link again never race each other, and the same step is
where a later rule for halves that never handshake (a peer behind NAT) can
choose another way to reach the peer instead of the same link again.
"""

import time
from dataclasses import dataclass

from . import established, join, linkfile, linkops, log
from .errors import WgmeshError
from .node import Node


@dataclass(frozen=True)
class Half:
    name: str
    peer_id: int
    written: float  # when the link file was last written (Unix time)
    last_handshake: float  # the device's latest handshake (Unix time); 0: never, or no device to ask
    established: bool  # the prober once had an echo answered over it (established.py)


def abandoned(halves: list[Half], now: float, bound: float) -> list[Half]:
    """The halves that never completed a handshake within bound seconds of
    their link file being written (pure). A handshake now or ever (the
    durable marker survives the device's restarts) keeps a half, whatever
    its age; a bound of 0 keeps every half."""
    if bound <= 0:
        return []
    return [half for half in halves
            if not half.last_handshake and not half.established and now - half.written > bound]


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
        if now - written <= bound or established.is_established(node.paths, link.name):
            continue
        device = linkops.device_status(node.paths, node.config, link.name)
        handshake = max((peer.last_handshake for peer in (device.peers if device else [])), default=0.0)
        halves.append(Half(link.name, link.peer_id, written, handshake, False))
    return halves


def sweep(node: Node, reachable: set[int], now: float | None = None) -> list[Half]:
    """Remove this node's abandoned halves (and, where the peer is
    reachable, the peer's half through the signed /disconnect); the
    halves removed."""
    now = time.time() if now is None else now
    bound = node.config.abandon_after
    removed = abandoned(_halves_to_check(node, now, bound) if bound > 0 else [], now, bound)
    for half in removed:
        age = int(now - half.written)
        log.event("link-abandoned", f"link {half.name} to node {half.peer_id} never completed a handshake in "
                                    f"{age} s; removing it so the mesh makes it again",
                  level="warning", link=half.name, peer=half.peer_id, age=age)
        _remove(node, half, reachable)
    return removed


def _remove(node: Node, half: Half, reachable: set[int]) -> None:
    if half.peer_id in reachable:
        try:
            join.disconnect(node, half.name, force=True)
            return
        except (WgmeshError, OSError) as error:
            log.warning(f"{half.name}: the peer could not be told ({error}); removing this side only",
                        link=half.name, peer=half.peer_id)
    join.remove_local(node, half.name)
