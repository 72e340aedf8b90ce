"""Sending one message to one URL through apprise (a Recommends: only the
notifier and `wgmesh notify test` need it).

apprise logs through `logging` (logger "apprise"), and its lines quote
URLs, tokens and payloads: that logger is switched off before apprise is
used, so nothing it says reaches the journal; so is urllib3's (under
apprise's HTTP), whose lines quote request paths, where some services
carry their tokens.
"""

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .notification import Message

# gotify's priorities; apprise takes one per URL, so a message's priority
# rides in its URL unless the operator set one there.
_GOTIFY_PRIORITY = {"low": "low", "normal": "normal", "high": "high"}


def silence_apprise() -> None:
    for name in ("apprise", "urllib3"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = False
        logger.disabled = True
        logger.setLevel(logging.CRITICAL + 1)


def apprise_module():
    """apprise, or None when it is not installed."""
    silence_apprise()
    try:
        import apprise  # an optional (Recommends:) and slow import: only when sending
    except ImportError:
        return None
    silence_apprise()
    return apprise


def url_for_message(url: str, priority: str) -> str:
    """The URL to send a message of this priority to."""
    parts = urlsplit(url)
    if parts.scheme not in ("gotify", "gotifys"):
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "priority" for key, _ in query):
        return url
    query.append(("priority", _GOTIFY_PRIORITY.get(priority, "normal")))
    return urlunsplit(parts._replace(query=urlencode(query)))


def known_url(url: str) -> bool | None:
    """Whether apprise can send to this URL (None: apprise is missing)."""
    apprise = apprise_module()
    if apprise is None:
        return None
    return bool(apprise.Apprise().add(url))


def send(url: str, message: Message) -> bool:
    """True once the server accepted the message. Raises ImportError when
    apprise is missing."""
    apprise = apprise_module()
    if apprise is None:
        raise ImportError("apprise")
    sender = apprise.Apprise()
    if not sender.add(url_for_message(url, message.priority)):
        return False
    try:
        return bool(sender.notify(title=message.title, body=message.body, notify_type=message.notify_type))
    except Exception:  # noqa: BLE001 - a plugin's failure is a failed delivery, retried; its text may hold the URL
        return False
