"""Notification URLs, /etc/wgmesh/notify.toml (0600): which apprise URLs
get which events. This module is its only reader and writer.

A URL holds credentials (a gotify token, a webhook secret), so no error
here quotes one, and what is shown of a URL is mask()'s.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError
from .notification import DEFAULT_KINDS, KINDS
from .paths import Paths
from .tomlio import SECRET_MODE, file_lock, read_toml, write_toml

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{1,31}")


@dataclass(frozen=True)
class Target:
    url: str
    kinds: tuple[str, ...] = DEFAULT_KINDS


def urls_path(paths: Paths):
    return paths.notify_urls_file


def mask(url: str) -> str:
    """Enough of a URL to tell it apart, nothing secret: the scheme, and
    the host when it reads as a host name (some schemes put a token where
    the host goes); never a user, password, path or query."""
    scheme, _, rest = url.partition("://")
    try:
        host = urlsplit(f"x://{rest}").hostname or ""
    except ValueError:
        host = ""
    if "@" in rest.split("/", 1)[0] or not ("." in host or host == "localhost"):
        host = ""
    return f"{scheme}://{host + '/' if host else ''}***"


def check_url(url: str) -> str:
    """The URL, or a ConfigError that does not quote it."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme.lower()) or not rest:
        raise ConfigError("not an apprise URL: it must look like SCHEME://... (like gotify://HOST/TOKEN)")
    if any(c.isspace() for c in url):
        raise ConfigError("an apprise URL has no spaces in it")
    return url


def check_kinds(kinds: list[str]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"events must be some of {', '.join(KINDS)}"
                          + (f", not {', '.join(map(repr, unknown))}" if unknown else ""))
    return tuple(k for k in KINDS if k in kinds)


def load(paths: Paths) -> list[Target]:
    path = urls_path(paths)
    if not path.exists():
        return []
    data = read_toml(path)
    targets = []
    for number, entry in enumerate(data.get("url", []), 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ConfigError(f"{path}: entry {number} has no url")
        try:
            check_url(entry["url"])
            kinds = entry.get("events", list(DEFAULT_KINDS))
            if not isinstance(kinds, list):
                raise ConfigError("events must be a list")
            targets.append(Target(entry["url"], check_kinds(kinds)))
        except ConfigError as error:
            raise ConfigError(f"{path}: entry {number} ({mask(entry['url'])}): {error}") from None
    return targets


def _save(paths: Paths, targets: list[Target]) -> None:
    write_toml(urls_path(paths), {"url": [{"url": t.url, "events": list(t.kinds)} for t in targets]}, SECRET_MODE)


def add(paths: Paths, url: str, kinds: tuple[str, ...] = DEFAULT_KINDS) -> bool:
    """Add a URL, or set the events of one already there; True when new."""
    check_url(url)
    with file_lock(paths.notify_urls_lock):
        targets = load(paths)
        new = all(t.url != url for t in targets)
        targets = [t for t in targets if t.url != url] + [Target(url, kinds)]
        _save(paths, targets)
    return new


def remove(paths: Paths, url_or_number: str) -> Target:
    """Remove a URL, given as itself or as its number in `list`."""
    with file_lock(paths.notify_urls_lock):
        targets = load(paths)
        if url_or_number.isdigit() and 1 <= int(url_or_number) <= len(targets):
            gone = targets[int(url_or_number) - 1]
        else:
            matches = [t for t in targets if t.url == url_or_number]
            if not matches:
                raise ConfigError("no such notification URL (see 'wgmesh notify list')")
            gone = matches[0]
        _save(paths, [t for t in targets if t is not gone])
    return gone
