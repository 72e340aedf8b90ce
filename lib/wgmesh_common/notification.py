"""What wgmesh-notifier tells an operator, decided by pure functions.

Journal entries (dicts of WGMESH_* fields) become per-peer events; a peer's
events are coalesced (the first goes out at once, the rest of a window as
one summary at its end) into messages; OSPF neighbour views are compared
into peer-down / peer-up changes. Nothing here does I/O: the program in
commands/notifier.py feeds it the journal, bird and the clock.
"""

import re
import time
from dataclasses import asdict, dataclass

from .addressing import MAX_NODE_ID

# What an operator can subscribe a URL to.
KINDS = ("down", "up", "degraded", "recovered", "joined", "left")
DEFAULT_KINDS = KINDS

# Journal event -> kind. link-added / link-removed are logged on both sides
# of every join and disconnect (the serving side's `join` and `disconnect`
# come with them), so those two alone stand for a node joining or leaving.
EVENT_KINDS = {
    "peer-down": "down",
    "peer-up": "up",
    "link-degraded": "degraded",
    "link-recovered": "recovered",
    "link-added": "joined",
    "link-removed": "left",
}
JOURNAL_EVENTS = tuple(EVENT_KINDS)
# WGMESH_EVENT is whatever the sender wrote, and any local user can write one
# (`logger --journald`); _UID journald takes from the sender's credentials.
# Every event above is logged by a root program (the notifier, the cost
# writer, the join helper, `wgmesh` run by root), so only root's count.
TRUSTED_SENDER_MATCH = "_UID=0"


def journal_matches() -> list[str]:
    """The journal matches of the entries the notifier follows: one of its
    events, from root (sd-journal ORs matches on one field, ANDs fields)."""
    return [f"WGMESH_EVENT={name}" for name in JOURNAL_EVENTS] + [TRUSTED_SENDER_MATCH]

# kind -> (priority, apprise notify type). A dead peer is what wakes someone.
PRIORITIES = {
    "down": ("high", "failure"),
    "up": ("normal", "success"),
    "degraded": ("normal", "warning"),
    "recovered": ("low", "success"),
    "joined": ("low", "info"),
    "left": ("normal", "warning"),
}
VERBS = {
    "down": "lost node {peer}",
    "up": "reaches node {peer} again",
    "degraded": "sees its link to node {peer} degraded",
    "recovered": "sees its link to node {peer} recovered",
    "joined": "linked with node {peer}",
    "left": "no longer links with node {peer}",
}
# Events of one peer this close together are one message (the IPv4 and IPv6
# link of a join are logged a moment apart).
GATHER = 2.0
_LINK_NAME = re.compile(r"wgm(\d{1,3})(v6)?")


@dataclass(frozen=True)
class PeerEvent:
    kind: str
    peer: int
    time: float
    links: tuple[str, ...] = ()
    rtt: float | None = None  # ms, the last probe round's average
    loss: float | None = None  # percent
    reason: str | None = None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "PeerEvent":
        return cls(kind=data["kind"], peer=int(data["peer"]), time=float(data["time"]),
                   links=tuple(data.get("links", ())), rtt=data.get("rtt"), loss=data.get("loss"),
                   reason=data.get("reason"))


@dataclass(frozen=True)
class Message:
    id: str
    peer: int
    kinds: tuple[str, ...]
    title: str
    body: str
    priority: str
    notify_type: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Message":
        return cls(id=str(data["id"]), peer=int(data["peer"]), kinds=tuple(data["kinds"]), title=str(data["title"]),
                   body=str(data["body"]), priority=str(data["priority"]), notify_type=str(data["notify_type"]))


def _number(text: object) -> float | None:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def event_from_journal(entry: dict, when: float) -> PeerEvent | None:
    """A journal entry's event about a peer, or None for anything else.
    when: the entry's time (the journal's own timestamp)."""
    kind = EVENT_KINDS.get(str(entry.get("WGMESH_EVENT", "")))
    if kind is None:
        return None
    links = tuple(l for l in str(entry.get("WGMESH_LINKS", entry.get("WGMESH_LINK", ""))).split(",") if l)
    peer = _number(entry.get("WGMESH_PEER"))
    if peer is None and links and (match := _LINK_NAME.fullmatch(links[0])):
        # link-removed names only the link; the name carries the peer.
        peer = float(match.group(1))
    if peer is None or not 0 <= peer <= MAX_NODE_ID:
        return None
    since = _number(entry.get("WGMESH_SINCE"))
    return PeerEvent(kind=kind, peer=int(peer), time=since if since is not None else when, links=links,
                     rtt=_number(entry.get("WGMESH_RTT")), loss=_number(entry.get("WGMESH_LOSS")),
                     reason=entry.get("WGMESH_REASON") or None)


def clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _figures(events: list[PeerEvent]) -> str:
    rtt = next((e.rtt for e in reversed(events) if e.rtt is not None), None)
    loss = next((e.loss for e in reversed(events) if e.loss is not None), None)
    parts = []
    if rtt is not None:
        parts.append(f"last RTT {rtt:g} ms")
    if loss is not None:
        parts.append(f"loss {loss:g} %")
    return ", ".join(parts)


def _links(events: list[PeerEvent]) -> list[str]:
    return sorted({link for e in events for link in e.links})


def build_message(node_id: int, events: list[PeerEvent]) -> Message:
    """One message about one peer: its events in order. A single kind reads
    as that event; several as a summary of what happened, ending with the
    peer's state now. The priority follows the latest event."""
    events = sorted(events, key=lambda e: e.time)
    peer, last = events[0].peer, events[-1]
    priority, notify_type = PRIORITIES[last.kind]
    kinds = tuple(dict.fromkeys(e.kind for e in events))
    links = _links(events)
    figures = _figures(events)
    if len(kinds) == 1:
        title = f"wgmesh: node {peer} {last.kind} (seen from node {node_id})"
        lines = [f"Node {node_id} {VERBS[last.kind].format(peer=peer)} since {clock(events[0].time)}."]
        if links:
            lines.append(f"Links: {', '.join(links)}.")
        reasons = sorted({e.reason for e in events if e.reason})
        if reasons:
            lines.append(f"Why: {'; '.join(reasons)}.")
    else:
        title = f"wgmesh: node {peer} changed {len(events)} times, now {last.kind} (seen from node {node_id})"
        lines = [f"Node {node_id} about node {peer}, from {clock(events[0].time)} to {clock(last.time)}:"]
        for event in events:
            on = f" ({', '.join(event.links)})" if event.links else ""
            lines.append(f"- {clock(event.time)}: {event.kind}{on}")
        lines.append(f"Now: {last.kind} since {clock(last.time)}.")
    if figures:
        lines.append(f"Figures: {figures}.")
    return Message(id=f"{peer}-{events[0].time:.6f}-{len(events)}", peer=peer, kinds=kinds, title=title,
                   body="\n".join(lines), priority=priority, notify_type=notify_type)


# ------------------------------------------------------------ coalescing
#
# The coalescer's state is a plain dict (peer as a string -> window), saved
# with the outboxes so a window open at a restart is closed afterwards:
#   {"first_due": t or None once sent, "window_end": t, "pending": [event]}

def coalesce_add(windows: dict, event: PeerEvent, window: float) -> dict:
    """The windows with one more event. A peer without an open window gets
    one: its first message is due after GATHER seconds."""
    windows = {k: dict(v) for k, v in windows.items()}
    key = str(event.peer)
    current = windows.get(key)
    if current is None:
        current = {"first_due": event.time + GATHER, "window_end": event.time + window, "pending": []}
    current["pending"] = list(current["pending"]) + [event.to_dict()]
    windows[key] = current
    return windows


def coalesce_due(windows: dict, now: float, window: float) -> tuple[dict, list[list[PeerEvent]]]:
    """The batches of events due at `now` (one message each, per URL: see
    message_for) and the windows left. A window's first batch goes at its
    first_due; what came after it, as one summary at the window's end,
    which opens the next window (so a flapping peer gets at most one
    message per window); a window ending with nothing pending closes."""
    remaining, batches = {}, []
    for key, current in sorted(windows.items(), key=lambda item: int(item[0])):
        current = dict(current)
        pending = [PeerEvent.from_dict(e) for e in current["pending"]]
        if current["first_due"] is not None:
            if now >= current["first_due"]:
                batches.append(pending)
                current["first_due"] = None
                current["pending"] = []
            remaining[key] = current
        elif now >= current["window_end"]:
            if pending:
                batches.append(pending)
                remaining[key] = {"first_due": None, "window_end": now + window, "pending": []}
        else:
            remaining[key] = current
    return remaining, batches


def next_due(windows: dict) -> float | None:
    """When coalesce_due next has something to do."""
    times = [w["first_due"] if w["first_due"] is not None else w["window_end"] for w in windows.values()]
    return min(times) if times else None


def message_for(node_id: int, batch: list[PeerEvent], kinds: tuple[str, ...]) -> Message | None:
    """The message a URL subscribed to `kinds` gets for a batch: built from
    the events it subscribed to only (a summary of down and up says "now
    up", whatever quality events came in between); None when there are none."""
    chosen = [event for event in batch if event.kind in kinds]
    return build_message(node_id, chosen) if chosen else None


# ------------------------------------------------------------ OSPF neighbours
#
# A view is {peer: [links with a Full neighbour]}; a peer is in it once it
# has been seen Full, so only a known peer can be reported down or back.

def neighbour_view(rows: list[dict], link_peers: dict[str, int], previous: dict[int, list[str]]) -> dict[int, list[str]]:
    """The view from `show ospf neighbors` rows: every peer of a link file
    that is Full on some link, plus the peers already known (now with their
    Full links, perhaps none)."""
    full: dict[int, set[str]] = {}
    for row in rows:
        peer = link_peers.get(row.get("interface", ""))
        if peer is not None and row.get("state", "").lower() == "full":
            full.setdefault(peer, set()).add(row["interface"])
    known = {p for p in previous if p in set(link_peers.values())} | set(full)
    return {peer: sorted(full.get(peer, ())) for peer in sorted(known)}


def peer_changes(before: dict[int, list[str]], after: dict[int, list[str]],
                 link_peers: dict[str, int]) -> list[tuple[str, int, list[str]]]:
    """(kind, peer, links) for every known peer that lost its last Full
    neighbour (down: all its links, none has a neighbour now, though they
    may have gone one poll apart) or got its first back (up: the links
    with one). A peer whose links were removed is not down: link-removed
    says it left."""
    changes = []
    for peer in sorted(set(before) | set(after)):
        had, has = before.get(peer), after.get(peer, [])
        if had is None:
            continue
        if had and not has and peer in link_peers.values():
            changes.append(("down", peer, sorted(name for name, p in link_peers.items() if p == peer)))
        elif not had and has:
            changes.append(("up", peer, list(has)))
    return changes
