"""HTTP client of the join API (http.client: nothing to install, nothing to pin)."""

import http.client
import io
import json
import ssl
import time
import urllib.parse
from typing import Any

from . import linkkeys
from .boundedio import BoundedReader, DeadlinePassed, SizeLimitExceeded
from .errors import RemoteError, WgmeshError
from .joinapi import PROTOCOL, PROTOCOL_FIELD, SIGNATURE_HEADER, UnusableJSON, decode_json

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


# The largest answer taken, headers included: a /connectivity or /connect
# answer is a few hundred bytes, and a hostile or broken server must not
# make a mesh pass hold hundreds of MiB.
MAX_ANSWER = 64 * 1024


def _left(deadline: float) -> float:
    """The seconds left until deadline, as a socket timeout (never 0: that means non-blocking)."""
    return max(deadline - time.monotonic(), 0.001)


class _BoundedAnswer:
    """What http.client reads an answer through (it calls makefile("rb")):
    the request's one deadline and byte budget, not a timeout per recv."""

    def __init__(self, sock, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str):
        reader = BoundedReader(self._sock)
        reader.start(self._deadline - time.monotonic(), MAX_ANSWER)
        return io.BufferedReader(reader)


class _Connection(http.client.HTTPConnection):
    """HTTP with one deadline for the whole exchange. Join requests carry
    tokens and go to mesh-internal addresses: never through an http_proxy
    from the environment (http.client reads none)."""

    def __init__(self, host: str, port: int | None, deadline: float):
        super().__init__(host, port, timeout=_left(deadline))
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(_left(self.deadline))

    def response_class(self, sock, *args, **kwargs):  # http.client's factory hook
        return http.client.HTTPResponse(_BoundedAnswer(sock, self.deadline), *args, **kwargs)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, deadline: float):
        http.client.HTTPSConnection.__init__(self, host, port, timeout=_left(deadline),
                                             context=ssl.create_default_context())
        self.deadline = deadline


def request(url: str, method: str, path: str, body: dict[str, Any] | bytes, signing_key: bytes | None = None,
            timeout: float = TIMEOUT) -> dict[str, Any]:
    """One request; timeout bounds all of it, from connecting to the last
    byte of the answer. Every failure, a bad answer included, is a
    RemoteError. A dict body gets this node's protocol version; a bytes
    body (signed_body) has it already."""
    deadline = time.monotonic() + timeout
    data = body if isinstance(body, bytes) else json.dumps({**body, PROTOCOL_FIELD: PROTOCOL}).encode()
    headers = {"Content-Type": "application/json"}
    if signing_key is not None:
        headers[SIGNATURE_HEADER] = linkkeys.sign(signing_key, method, path, data)
    try:
        parts = urllib.parse.urlsplit(url)
        kind = _TLSConnection if parts.scheme == "https" else _Connection
        connection = kind(parts.hostname or "", parts.port, deadline)
    except ValueError as error:
        raise RemoteError(f"cannot reach {url}: {error}") from None
    try:
        response, raw = _exchange(connection, method, path, data, headers)
    except DeadlinePassed:
        raise RemoteError(f"{url} did not answer {path} within {timeout:g} s") from None
    except SizeLimitExceeded:
        raise RemoteError(f"{url} sent an answer to {path} larger than {MAX_ANSWER} bytes") from None
    except TimeoutError:
        raise RemoteError(f"cannot reach {url}: no connection within {timeout:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise RemoteError(f"cannot reach {url}: {_reason(error)}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        reason = _error_of(raw, response.reason)
        if response.status == 400 and f"unknown field {PROTOCOL_FIELD!r}" in reason:
            reason = (f"it runs an older wgmesh (join protocol 1) and this node speaks {PROTOCOL}: "
                      f"upgrade it (see the README, Upgrading)")
        raise RemoteError(f"{url} refused {path} ({response.status}): {reason}", response.status)
    return _decode(raw, url)


def _exchange(connection, method: str, path: str, data: bytes, headers: dict) -> tuple:
    """Send one request; the response and at most MAX_ANSWER bytes of it."""
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    length = response.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > MAX_ANSWER:
        raise SizeLimitExceeded()
    raw = response.read(MAX_ANSWER + 1)
    if len(raw) > MAX_ANSWER:
        raise SizeLimitExceeded()
    return response, raw


def _printable(text: str, limit: int = 300) -> str:
    """A remote's words, fit for one line of a terminal or the journal."""
    text = " ".join(str(text).split())[:limit]
    return "".join(c if c.isprintable() else "?" for c in text).encode("utf-8", "replace").decode()


def _reason(error: Exception) -> str:
    return _printable(getattr(error, "strerror", None) or error or type(error).__name__)


def _error_of(raw: bytes, fallback: str) -> str:
    try:
        reason = decode_json(raw).get("error")
    except (ValueError, AttributeError):
        reason = None
    return _printable(reason if isinstance(reason, str) and reason.strip() else fallback or "no reason given")


def _decode(raw: bytes, url: str) -> dict[str, Any]:
    try:
        data = decode_json(raw)
    except UnusableJSON as error:
        raise RemoteError(f"{url} answered with {error}") from None
    except ValueError:
        raise RemoteError(f"{url} answered with something that is not JSON: is it a wgmesh join-server?") from None
    if not isinstance(data, dict):
        raise RemoteError(f"{url} answered with an unexpected document")
    return data
