"""What `wgmesh status` shows: a row per link, from the link files, the
WireGuard devices and bird. Gathering is separate from formatting so the
table and --json come from the same rows."""

import time
from dataclasses import asdict, dataclass, field

from . import bird, coststate, linkfile, linkops, netlink, pins
from .node import Node
from .quality import LinkState, round_figure

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
    rtt: float | None = None  # ms, the cost-writer's recent estimates
    loss: float | None = None  # percent
    jitter: float | None = None  # ms, as measured
    host_jitter: float | None = None  # ms, the host's own in the same rounds (median)
    link_jitter: float | None = None  # ms, the jitter above the host's: what the jitter penalty judges
    cost: int | None = None  # the published OSPF cost
    why: str = "-"
    # Active penalties (loss, jitter, down) -> until when (Unix time).
    penalties: dict[str, float] = field(default_factory=dict)
    # False: the peer cannot forward, and this link carries no transit.
    peer_forwards: bool = True
    # From the WireGuard device; None when it could not be read (down, or
    # the kernel's netlink without CAP_NET_ADMIN). Handshake: Unix time, 0 never.
    last_handshake: float | None = None
    rx_bytes: int | None = None
    tx_bytes: int | None = None


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


def clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def explain(state: LinkState | None, pinned: bool) -> str:
    """Why a link costs what it costs, in a few words."""
    if state is None:
        return "not measured yet"
    if pinned or state.reason == "manual":
        return "pinned (wgmesh cost)"
    if state.reason == "down" or state.down_until:
        return f"down, held until {clock(state.down_until)}" if state.down_until else "down"
    penalties = [f"{name} penalty until {clock(until)}"
                 for name, until in (("loss", state.loss_until), ("jitter", state.jitter_until)) if until]
    if penalties:
        return ", ".join(penalties)
    if state.reason == "recovered":
        return "recovered"
    if state.latency_cost is None:
        return "not measured yet"
    # Measured, but a move smaller than the hysteresis publishes nothing.
    return "latency" if state.latency_cost == state.cost else "latency (within hysteresis)"


def cost_states(node: Node, links: list[linkfile.Link]) -> tuple[dict[str, LinkState], dict[str, int], list[str]]:
    states, state_problem = coststate.read_states(node.paths)
    pinned, pins_problem = pins.pinned_costs(node.paths, links)
    return states, pinned, [p for p in (state_problem, pins_problem) if p]


def gather(node: Node, now: float | None = None) -> tuple[list[LinkRow], list[str]]:
    now = time.time() if now is None else now
    links, problems = linkfile.load_all(node.paths)
    states, pinned, cost_problems = cost_states(node, links)
    problems += cost_problems
    neighbours = ospf_states(node)
    backend = linkops.backend_of(node.paths, node.config) if links else None
    rows = []
    for link in links:
        up = netlink.interface_is_up(link.name)
        device = linkops.device_status(node.paths, node.config, link.name, backend) if up else None
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
            peer_forwards=link.peer_forwards,
            last_handshake=handshake if peer else None,
            rx_bytes=peer.rx_bytes if peer else None,
            tx_bytes=peer.tx_bytes if peer else None,
            **quality_fields(states.get(link.name), link.name in pinned),
        ))
    return rows, problems


def quality_fields(state: LinkState | None, pinned: bool) -> dict:
    if state is None:
        return {"why": explain(None, pinned)}
    return {"rtt": round_figure(state.rtt), "loss": round_figure(state.loss), "jitter": round_figure(state.jitter),
            "host_jitter": round_figure(state.host_jitter), "link_jitter": round_figure(state.link_jitter),
            "cost": state.cost, "why": explain(state, pinned),
            "penalties": {name: getattr(state, f"{name}_until") for name in state.penalties}}


def table(rows: list[LinkRow]) -> str:
    headers = ["LINK", "PEER", "TRANSPORT", "ENDPOINT", "STATE", "HANDSHAKE", "OSPF", "RTT", "LOSS", "JITTER",
               "COST", "WHY"]
    figure = lambda value, unit: "-" if value is None else f"{value:.1f}{unit}"
    cells = [[r.name, str(r.peer), r.transport, r.endpoint, r.state, r.handshake, r.ospf, figure(r.rtt, "ms"),
              figure(r.loss, "%"), jitter_cell(r), "-" if r.cost is None else str(r.cost), r.why]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines)


def jitter_cell(row: LinkRow) -> str:
    """The jitter as measured, and beside it the figure the penalty judges:
    its jitter above the host's (not measured minus host: each is a median
    over the rounds of its own)."""
    if row.jitter is None:
        return "-"
    judged = f" ({row.link_jitter:.1f} above host)" if row.link_jitter is not None else ""
    return f"{row.jitter:.1f}ms{judged}"


def forwarding_lines(own_problem: str | None, rows: list[LinkRow]) -> list[str]:
    """What status says about forwarding (pure): this node's problem, and
    the peers that carry no transit because they cannot forward."""
    lines = [own_problem] if own_problem else []
    peers = sorted({row.peer for row in rows if not row.peer_forwards})
    if peers:
        lines.append("peers that cannot forward (no transit through them): "
                     + ", ".join(f"node {peer}" for peer in peers))
    return lines


def as_dicts(rows: list[LinkRow]) -> list[dict]:
    return [asdict(r) for r in rows]
