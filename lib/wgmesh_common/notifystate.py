"""wgmesh-notifier's durable state, /var/lib/wgmesh/notifier.json: the
journal cursor, the open coalescing windows, the OSPF neighbour view and
one outbox per URL. This module is its only reader and writer.

Delivery is at least once: an event is first in an outbox (or an open
window) in the same atomic save that moves the cursor past it, and a
message leaves its outbox only in the save after the server accepted it.
The only duplicate is a notifier dying between the server's answer and
that save. Outboxes are keyed by a hash of the URL, so the file holds no
credentials; each URL has its own, so one failing URL holds up no other.
"""

import hashlib
import json

from . import log
from .notification import Message
from .paths import Paths
from .tomlio import SECRET_MODE, write_atomic

# Retries: 10 s, 20 s, 40 s ... never more than RETRY_MAX apart, forever
# (the outbox bound, not time, is what gives up on messages).
RETRY_BASE = 10.0
RETRY_MAX = 300.0
OUTBOX_LIMIT = 100


def state_path(paths: Paths):
    return paths.notifier_state_file


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def empty() -> dict:
    return {"cursor": None, "windows": {}, "neighbours": {}, "bird_started": None, "outboxes": {}}


def empty_outbox() -> dict:
    return {"messages": [], "dropped": 0, "attempts": 0, "next_try": 0.0}


def load(paths: Paths) -> dict:
    """The saved state; a missing or unreadable file starts afresh (saying so)."""
    path = state_path(paths)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        return empty()
    except (OSError, ValueError) as error:
        log.warning(f"{path}: unreadable ({error}); starting with no pending notifications")
        return empty()
    state = empty()
    state.update({k: data[k] for k in state if k in data})
    state["neighbours"] = {int(k): list(v) for k, v in state["neighbours"].items()}
    return state


def save(paths: Paths, state: dict) -> None:
    data = dict(state)
    data["neighbours"] = {str(k): v for k, v in state["neighbours"].items()}
    write_atomic(state_path(paths), (json.dumps(data, sort_keys=True) + "\n").encode(), SECRET_MODE)


def keep_outboxes(state: dict, urls: list[str]) -> dict:
    """Outboxes for exactly the configured URLs (a removed URL's pending
    messages go with it)."""
    keys = [url_key(u) for u in urls]
    return {**state, "outboxes": {k: state["outboxes"].get(k) or empty_outbox() for k in keys}}


def enqueue(outbox: dict, message: Message, limit: int = OUTBOX_LIMIT) -> dict:
    """The outbox with the message added; past `limit` the oldest message
    goes and is counted, so the phone still learns the latest state."""
    messages = list(outbox["messages"]) + [message.to_dict()]
    dropped = outbox["dropped"]
    while len(messages) > limit:
        messages.pop(0)
        dropped += 1
    return {**outbox, "messages": messages, "dropped": dropped}


def dropped_message(count: int, limit: int = OUTBOX_LIMIT) -> Message:
    return Message(id=f"dropped-{count}", peer=-1, kinds=(), priority="normal", notify_type="warning",
                   title=f"wgmesh: {count} notification{'s' if count != 1 else ''} dropped",
                   body=f"This URL was unreachable for long enough that {count} older "
                        f"notification{'s' if count != 1 else ''} did not fit in its outbox "
                        f"(at most {limit}); the newest follow.")


def due(outbox: dict, now: float, limit: int = OUTBOX_LIMIT) -> Message | None:
    """What to send to this URL now: nothing while backing off, the
    dropped count first, then the oldest message."""
    if now < outbox["next_try"]:
        return None
    if outbox["dropped"]:
        return dropped_message(outbox["dropped"], limit)
    if outbox["messages"]:
        return Message.from_dict(outbox["messages"][0])
    return None


def delivered(outbox: dict, message: Message) -> dict:
    """The outbox once the server accepted `message` (what due() returned)."""
    if message.id.startswith("dropped-") and message.peer == -1:
        return {**outbox, "dropped": 0, "attempts": 0, "next_try": 0.0}
    messages = [m for m in outbox["messages"] if m["id"] != message.id]
    return {**outbox, "messages": messages, "attempts": 0, "next_try": 0.0}


def failed(outbox: dict, now: float, base: float = RETRY_BASE, maximum: float = RETRY_MAX) -> dict:
    """The outbox after a failed attempt: the next one after an
    exponentially growing pause, at most `maximum` seconds."""
    attempts = outbox["attempts"] + 1
    delay = min(maximum, base * 2 ** (attempts - 1))
    return {**outbox, "attempts": attempts, "next_try": now + delay}
