"""HTTP client of the join API (urllib: nothing to install, nothing to pin)."""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import RemoteError, WgmeshError
from . import linkkeys
from .joinapi import PROTOCOL, PROTOCOL_FIELD, SIGNATURE_HEADER

TIMEOUT = 15.0
# /connect makes the link on the other side (files, unit, bird) before it
# answers; a busy node takes longer than a question does. The server drops
# a half whose answer was lost when it is asked again, so waiting is
# cheaper than retrying.
CONNECT_TIMEOUT = 45.0


def parse_url(url: str) -> urllib.parse.SplitResult:
    """Check a join-server URL; one-line error on anything unusable."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WgmeshError(f"bad URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise WgmeshError(f"bad URL {url!r}: it must start with http:// or https://")
    if not parts.hostname:
        raise WgmeshError(f"bad URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise WgmeshError(f"bad URL {url!r}: give only scheme, host and port, like http://192.0.2.1:8080")
    del port
    return parts


# Join requests carry tokens and go to mesh-internal addresses: never through
# an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, method: str, path: str, body: dict[str, Any] | bytes, signing_key: bytes | None = None,
            timeout: float = TIMEOUT) -> dict[str, Any]:
    """One API request. A dict body gets this node's protocol version; a
    bytes body (signed_body) has it already."""
    data = body if isinstance(body, bytes) else json.dumps({**body, PROTOCOL_FIELD: PROTOCOL}).encode()
    headers = {"Content-Type": "application/json"}
    if signing_key is not None:
        headers[SIGNATURE_HEADER] = linkkeys.sign(signing_key, method, path, data)
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            return _decode(response.read(), url)
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error") or error.reason
        except (ValueError, AttributeError):
            reason = error.reason
        if error.code == 400 and f"unknown field {PROTOCOL_FIELD!r}" in str(reason):
            reason = (f"it runs an older wgmesh (join protocol 1) and this node speaks {PROTOCOL}: "
                      f"upgrade it (see the README, Upgrading)")
        raise RemoteError(f"{url} refused {path} ({error.code}): {reason}", error.code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RemoteError(f"cannot reach {url}: {reason}") from None


def _decode(raw: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise RemoteError(f"{url} answered with something that is not JSON: is it a wgmesh join-server?") from None
    if not isinstance(data, dict):
        raise RemoteError(f"{url} answered with an unexpected document")
    return data
