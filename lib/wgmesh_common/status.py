"""What `wgmesh status` shows: a row per link, from the link files, the
WireGuard devices and bird. Gathering is separate from formatting so the
table and --json come from the same rows."""

import time
from dataclasses import asdict, dataclass

from . import bird, linkfile, linkops, meshview, netlink
from .node import Node

HANDSHAKE_FRESH = 180.0  # WireGuard rekeys every 120 s: older means the peer is gone


@dataclass
class LinkRow:
    name: str
    peer: int
    transport: str
    endpoint: str
    state: str
    handshake: str
    ospf: str


def link_state(interface_up: bool, last_handshake: float, now: float) -> str:
    if not interface_up:
        return "down"
    if not last_handshake:
        return "no-handshake"
    return "up" if now - last_handshake < HANDSHAKE_FRESH else "stale"


def age(seconds_ago: float) -> str:
    if seconds_ago < 120:
        return f"{int(seconds_ago)}s ago"
    if seconds_ago < 7200:
        return f"{int(seconds_ago // 60)}m ago"
    return f"{int(seconds_ago // 3600)}h ago"


def ospf_states(node: Node) -> dict[str, str]:
    control = bird.BirdControl(node.paths.bird_socket, timeout=3)
    try:
        return {row["interface"]: row["state"] for row in control.ospf_neighbors("wgmesh4")}
    except (bird.BirdError, OSError):
        return {}


def gather(node: Node, now: float | None = None) -> tuple[list[LinkRow], list[str]]:
    now = time.time() if now is None else now
    links, problems = linkfile.load_all(node.paths)
    neighbours = ospf_states(node)
    rows = []
    for link in links:
        up = netlink.interface_is_up(link.name)
        device = linkops.device_status(node.config, link.name) if up else None
        peer = device.peers[0] if device and device.peers else None
        handshake = peer.last_handshake if peer else 0.0
        rows.append(LinkRow(
            name=link.name,
            peer=link.peer_id,
            transport=f"IPv{link.family}",
            endpoint=(peer.endpoint if peer and peer.endpoint else link.endpoint) or "-",
            state=link_state(up, handshake, now),
            handshake=age(now - handshake) if handshake else "never",
            ospf=neighbours.get(link.name, "-"),
        ))
    return rows, problems


def routes_to_nodes(plan, own_id: int, routes) -> dict[int, str]:
    """Node ID -> the interface its loopback is routed over (pure)."""
    found = {}
    for route in routes:
        for node_id in meshview.reachable_nodes([route], plan, own_id):
            found[node_id] = route.interface or "?"
    return dict(sorted(found.items()))


def reachable(node: Node) -> dict[int, str]:
    return routes_to_nodes(node.plan, node.node_id, netlink.routes(4))


def table(rows: list[LinkRow]) -> str:
    headers = ["LINK", "PEER", "TRANSPORT", "ENDPOINT", "STATE", "HANDSHAKE", "OSPF"]
    cells = [[r.name, str(r.peer), r.transport, r.endpoint, r.state, r.handshake, r.ospf] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines)


def as_dicts(rows: list[LinkRow]) -> list[dict]:
    return [asdict(r) for r in rows]
