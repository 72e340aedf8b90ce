"""The join API's wire format: request validation, responses, signatures.

Pure functions only; the HTTP server and client are thin layers over this.
Requests are JSON objects that say which version of the protocol they
speak ("protocol"); a node answers one it cannot speak with a 400 naming
both versions. No secret crosses the wire: each side derives the link's
preshared key and its signing key from the two WireGuard keys (linkkeys).
/update, /disconnect and a /connect that replaces a half which carried
traffic are signed with HMAC-SHA256 under the link's signing key, over the
method, the path and the exact body, which includes a timestamp; the server
accepts each link's timestamps only in increasing order, so a captured
request cannot be replayed.
"""

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from . import linkfile, linkkeys
from .addressing import MeshPlan
from .errors import ConfigError
from .fieldtypes import has_type

# 1: the preshared key in the /connect answer, requests signed with it.
# 2: derived link keys; every request and answer carries "protocol".
PROTOCOL = 2
PROTOCOL_FIELD = "protocol"
MAX_BODY = 16 * 1024
# No field of the API needs more: the bounds keep a hostile document from
# costing CPU (int() of 5000 digits) or stack (5000 nested brackets).
MAX_DIGITS = 20
MAX_DEPTH = 16
CLOCK_SKEW = 300.0
SIGNATURE_HEADER = "X-Wgmesh-Signature"


class RequestError(Exception):
    """A request the server refuses: HTTP status plus a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = " ".join(reason.split())


class UnusableJSON(ValueError):
    """Valid JSON that no message of the API can be: the reason is a noun
    phrase ("a number with more than 20 digits") for either side to report."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise UnusableJSON(f"a number with more than {MAX_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnusableJSON(f"a number out of range ({text[:30]})")
    return value


def _no_constant(name: str) -> None:
    raise UnusableJSON(f"{name}, which is not a number")


def _check_document(document: Any) -> None:
    """Depth and strings, walked without recursion (the depth is the question)."""
    pending = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise UnusableJSON(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            pending.extend((key, depth + 1) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # JSON's \ud800 escape: a string no file, log or compare can take.
                raise UnusableJSON("a string with a lone surrogate") from None


def decode_json(raw: bytes) -> Any:
    """A JSON document as the join API accepts it, in requests and answers.
    Raises json.JSONDecodeError or UnicodeDecodeError for what is not JSON,
    UnusableJSON for JSON that no message of the API can be."""
    try:
        document = json.loads(raw, parse_int=_bounded_int, parse_float=_finite_float,
                              parse_constant=_no_constant)
    except RecursionError:
        raise UnusableJSON(f"nesting deeper than {MAX_DEPTH} levels") from None
    _check_document(document)
    return document


def parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise RequestError(413, f"request body larger than {MAX_BODY} bytes")
    try:
        body = decode_json(raw)
    except UnusableJSON as error:
        raise RequestError(400, f"request body has {error}") from None
    except ValueError:
        raise RequestError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    return body


def take_protocol(body: dict) -> None:
    """Remove the body's protocol version, refusing one this node cannot
    speak (a body without one is from before versions were sent: 1)."""
    version = body.pop(PROTOCOL_FIELD, 1)
    if not has_type(version, int) or not 0 < version < 1000:
        raise RequestError(400, f"field {PROTOCOL_FIELD!r} must be a protocol version number")
    if version != PROTOCOL:
        older = "the requesting node" if version < PROTOCOL else "this node"
        raise RequestError(400, f"this node speaks join protocol {PROTOCOL}, the request protocol {version}: "
                                f"upgrade {older} (see the README, Upgrading)")


def _field(body: dict, name: str, kind: type, required: bool = True) -> Any:
    if name not in body:
        if required:
            raise RequestError(400, f"missing field {name!r}")
        return None
    value = body[name]
    if not has_type(value, kind):
        expected = {int: "an integer", str: "a string", float: "a number", bool: "true or false"}.get(kind, kind.__name__)
        raise RequestError(400, f"field {name!r} must be {expected}")
    return value


def _check_known(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}")


def check_peer_id(plan: MeshPlan, peer_id: int, own_id: int) -> None:
    problem = plan.node_id_problem(peer_id)
    if problem:
        raise RequestError(400, f"id {problem}")
    if peer_id == own_id:
        raise RequestError(409, f"id {peer_id} is this node's own ID (a node cannot join itself, nor share its ID)")


@dataclass(frozen=True)
class ConnectivityRequest:
    peer_id: int
    token: str | None


def parse_connectivity(body: dict, plan: MeshPlan, own_id: int) -> ConnectivityRequest:
    _check_known(body, {"id", "token"})
    peer_id = _field(body, "id", int)
    check_peer_id(plan, peer_id, own_id)
    return ConnectivityRequest(peer_id, _field(body, "token", str, required=False))


@dataclass(frozen=True)
class ConnectRequest:
    peer_id: int
    public_key: str
    listen_port: int
    family: int
    link_type: str
    token: str | None
    # False when the joining node said it cannot forward (it says so only then).
    forwards: bool = True
    # Sent with a /connect signed by a link the joining node already has with
    # this one (a second family, or a half replaced): refuses replays.
    timestamp: float | None = None


def parse_connect(body: dict, plan: MeshPlan, own_id: int) -> ConnectRequest:
    _check_known(body, {"id", "token", "public_key", "listen_port", "family", "type", "forwarding", "timestamp"})
    peer_id = _field(body, "id", int)
    check_peer_id(plan, peer_id, own_id)
    public_key = _field(body, "public_key", str)
    try:
        linkfile.check_key(public_key, "public_key")
    except ConfigError as error:
        raise RequestError(400, str(error)) from None
    listen_port = _field(body, "listen_port", int)
    if not 1 <= listen_port <= 65535:
        raise RequestError(400, f"listen_port {listen_port} is out of range (1-65535)")
    family = _field(body, "family", int)
    if family not in linkfile.FAMILIES:
        raise RequestError(400, f"family must be 4 or 6, not {family}")
    link_type = _field(body, "type", str, required=False) or "wireguard"
    if link_type not in linkfile.LINK_TYPES:
        raise RequestError(400, f"unknown link type {link_type!r} (this node knows: {', '.join(linkfile.LINK_TYPES)})")
    forwards = _field(body, "forwarding", bool, required=False)
    return ConnectRequest(peer_id, public_key, listen_port, family, link_type, _field(body, "token", str, required=False),
                          forwards is not False, _timestamp(body, required=False))


class UnusableAnswer(ValueError):
    """An answer no node of this protocol would send: the reason names the field."""


def _answer_int(document: dict, name: str, low: int, high: int | None = None, required: bool = True) -> int | None:
    if name not in document and not required:
        return None
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        raise UnusableAnswer(f"{name} {value!r}")
    return value


@dataclass(frozen=True)
class ConnectAnswer:
    """The serving side's half of a new link, as /connect answers it: what
    the joining side needs to make its own half. The serving side writes it
    (to_wire) and the joining side reads it (from_wire), so the two agree on
    one definition. A link type other than plain WireGuard (obfuscation, NAT
    traversal) adds its own parameters here as optional fields; a reader
    ignores fields it does not know, so newer answers still read."""
    peer_id: int  # the serving node's ID ("id")
    public_key: str
    listen_port: int
    offset: int  # of the link's /31 and /127 in the serving node's block
    # The serving side's interface name and MTU: for logs, the joining
    # side's half needs neither (an answer without them is still usable).
    name: str | None = None
    mtu: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {PROTOCOL_FIELD: PROTOCOL, "id": self.peer_id, "name": self.name, "public_key": self.public_key,
                "listen_port": self.listen_port, "offset": self.offset, "mtu": self.mtu}

    @classmethod
    def from_wire(cls, document: Any) -> "ConnectAnswer":
        """The answer, once every field it has is what a node would send;
        UnusableAnswer naming the first that is not."""
        if not isinstance(document, dict):
            raise UnusableAnswer("not a JSON object")
        peer_id = _answer_int(document, "id", 0)
        try:
            public_key = linkfile.check_key(document.get("public_key"), "public_key")
        except ConfigError as error:
            raise UnusableAnswer(str(error)) from None
        listen_port = _answer_int(document, "listen_port", 1, 65535)
        offset = _answer_int(document, "offset", 0)
        name = document.get("name")
        if name is not None and not linkfile.valid_name(name):
            raise UnusableAnswer(f"name {name!r}")
        mtu = _answer_int(document, "mtu", 1, 65535, required=False)
        return cls(peer_id, public_key, listen_port, offset, name, mtu)


def _timestamp(body: dict, required: bool) -> float | None:
    """The body's timestamp: a finite number of seconds (None when absent and not required)."""
    timestamp = body.get("timestamp")
    if timestamp is None and not required:
        return None
    if not has_type(timestamp, (int, float)):
        raise RequestError(400, "field 'timestamp' must be a number")
    try:
        timestamp = float(timestamp)
    except OverflowError:
        timestamp = math.inf
    if not math.isfinite(timestamp):
        raise RequestError(400, "field 'timestamp' must be a finite number of seconds")
    return timestamp


@dataclass(frozen=True)
class SignedRequest:
    peer_id: int
    family: int
    timestamp: float
    public_key: str | None = None


def parse_signed(body: dict, plan: MeshPlan, own_id: int, allow: set[str]) -> SignedRequest:
    _check_known(body, {"id", "family", "timestamp"} | allow)
    peer_id = _field(body, "id", int)
    check_peer_id(plan, peer_id, own_id)
    family = _field(body, "family", int)
    if family not in linkfile.FAMILIES:
        raise RequestError(400, f"family must be 4 or 6, not {family}")
    timestamp = _timestamp(body, required=True)
    public_key = None
    if "public_key" in allow and "public_key" in body:
        public_key = _field(body, "public_key", str)
        try:
            linkfile.check_key(public_key, "public_key")
        except ConfigError as error:
            raise RequestError(400, str(error)) from None
    return SignedRequest(peer_id, family, timestamp, public_key)


def verify_signature(key: bytes, method: str, path: str, body: bytes, claimed: str | None) -> None:
    if not claimed:
        raise RequestError(401, f"missing {SIGNATURE_HEADER} header")
    if not linkkeys.signature_matches(key, method, path, body, claimed):
        raise RequestError(403, "signature does not match this link's key")


def check_fresh(timestamp: float, last_accepted: float | None, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not math.isfinite(timestamp):
        # NaN is never "away" from the clock and never <= a marker: it
        # would pass both checks, and as a marker disable the second.
        raise RequestError(400, "request timestamp must be a finite number of seconds")
    if last_accepted is not None and not math.isfinite(last_accepted):
        last_accepted = None
    if abs(now - timestamp) > CLOCK_SKEW:
        raise RequestError(403, f"request timestamp is more than {int(CLOCK_SKEW)} s away from this node's clock")
    if last_accepted is not None and timestamp <= last_accepted:
        raise RequestError(403, "request was already used (replay refused)")


def signed_body(fields: dict[str, Any], now: float | None = None) -> bytes:
    body = dict(fields)
    body[PROTOCOL_FIELD] = PROTOCOL
    body["timestamp"] = round(time.time() if now is None else now, 6)
    return json.dumps(body, sort_keys=True).encode()
