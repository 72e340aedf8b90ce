"""Underlay latency to the other nodes, and the cutoff that keeps far nodes
out of the full mesh (`wgmesh proximity`). Measurements are kept in
/var/lib/wgmesh/proximity.toml so mesh passes need not re-measure."""

import ipaddress
import time
from dataclasses import dataclass

from . import joinclient, meshview, probe
from .errors import WgmeshError
from .node import Node
from .tomlio import read_toml, write_toml

MAX_AGE = 24 * 3600.0


@dataclass(frozen=True)
class Distance:
    peer_id: int
    address: str | None
    rtt: float | None  # ms over the underlay; None: no answer
    measured: float | None = None  # epoch seconds


def store_path(node: Node):
    return node.paths.proximity_file


def load(node: Node) -> dict[int, Distance]:
    path = store_path(node)
    if not path.exists():
        return {}
    try:
        entries = read_toml(path).get("node", [])
        return {e["id"]: Distance(e["id"], e.get("address"), e.get("rtt"), e.get("time")) for e in entries
                if time.time() - e.get("time", 0) < MAX_AGE}
    except (WgmeshError, KeyError, TypeError):
        return {}


def save(node: Node, distances: list[Distance]) -> None:
    now = time.time()
    write_toml(store_path(node), {"node": [{"id": d.peer_id, "address": d.address, "rtt": d.rtt,
                                            "time": d.measured or now} for d in distances]})


def beyond(distances: dict[int, Distance], cutoff: int) -> set[int]:
    """Nodes measured slower than cutoff ms (pure). Unmeasured nodes are
    not excluded: no answer over the underlay is not a measurement."""
    if cutoff <= 0:
        return set()
    return {d.peer_id for d in distances.values() if d.rtt is not None and d.rtt > cutoff}


def excluded(node: Node, candidates: set[int]) -> set[int]:
    """Candidates beyond the node's cutoff. Those without a fresh
    measurement are measured now, so a cutoff keeps applying to nodes that
    join later and after old measurements expire."""
    cutoff = node.config.proximity_cutoff
    if cutoff <= 0:
        return set()
    known = load(node)
    missing = set(candidates) - set(known)
    if missing:
        known.update({d.peer_id: d for d in measure(node, peers=missing)})
        save(node, list(known.values()))
    return beyond(known, cutoff)


def _is_address(value) -> bool:
    """An underlay address as a peer's answer gives it (anything else is ignored)."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def measure(node: Node, count: int = 3, peers: set[int] | None = None) -> list[Distance]:
    """Ask each reachable node (or just peers) for its underlay address (over
    the mesh) and ping that address; nearest first."""
    if peers is None:
        peers = set(meshview.reachable(node.plan, node.node_id))
    results = []
    for peer_id in sorted(peers):
        try:
            info = joinclient.request(node.api_url_of(peer_id), "POST", "/connectivity", {"id": node.node_id},
                                      timeout=5)
            address = next((a for a in (info.get("ipv4"), info.get("ipv6")) if _is_address(a)), None)
        except WgmeshError:
            address = None
        rtt = None
        if address:
            samples = probe.sample_rtts(address, count, 0.1, 1.0)
            answered = [s for s in samples if s is not None]
            rtt = round(sum(answered) / len(answered), 3) if answered else None
        results.append(Distance(peer_id, address, rtt))
    results.sort(key=lambda d: (d.rtt is None, d.rtt or 0, d.peer_id))
    return results
