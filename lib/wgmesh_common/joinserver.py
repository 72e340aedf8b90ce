"""The join-server: HTTP glue around JoinService, which holds the logic.

JoinService.handle() takes (method, path, headers, body, source, local) and
returns (status, document), so it is tested without sockets; JoinHandler
only moves bytes. Socket activation (LISTEN_FDS) is honoured.
"""

import collections
import io
import ipaddress
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import join, joinapi, keys, linkfile, linkkeys, log, meshview, netlink, servicemanager
from .boundedio import BoundedReader, DeadlinePassed, SizeLimitExceeded
from .errors import WgmeshError
from .joinapi import RequestError
from .joinhelper import plain_address
from .node import Node
from .tokens import TokenStore

FAILURES_ALLOWED = 5
# From every source together: a botnet of addresses gets no more tries than
# this, however many addresses it has.
FAILURES_ALLOWED_IN_ALL = 60
FAILURE_WINDOW = 60.0
# Refusals that count against the source: bad input, bad credentials. A
# conflict (409) is asked by someone entitled to ask; a 429 is the count.
UNCOUNTED_STATUSES = (409, 429)
FORWARDED_FOR = "X-Forwarded-For"


def limiter_key(source: str) -> str:
    """What the limiter counts as one source: an address, or an IPv6 /64,
    a single host's usual share (one attacker's 2^64 addresses count once)."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class FailureLimiter:
    """Refused requests per source (see limiter_key) and from all sources
    together, in a sliding window."""

    MAX_SOURCES = 10000

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW,
                 allowed_in_all: int = FAILURES_ALLOWED_IN_ALL):
        self.allowed = allowed
        self.allowed_in_all = allowed_in_all
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._all: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(key, []) if now - t < self.window]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def _wait(self, oldest: float, now: float) -> int:
        return int(self.window - (now - oldest)) + 1

    def check(self, source: str, now: float | None = None, exempt: Callable[[], bool] | None = None) -> None:
        """429 when the source, or every source together, was refused too
        often lately. `exempt` is asked only when every source together is
        over its cap: whether this request may pass that cap anyway."""
        now = time.monotonic() if now is None else now
        key = limiter_key(source)
        with self._lock:
            recent = self._recent(key, now)
            if len(recent) >= self.allowed:
                raise RequestError(429, f"too many refused requests from {key}; "
                                        f"retry in {self._wait(recent[0], now)} s")
            while self._all and now - self._all[0] >= self.window:
                self._all.popleft()
            over_all = len(self._all) >= self.allowed_in_all
            wait = self._wait(self._all[0], now) if over_all else 0
        if over_all and not (exempt and exempt()):
            raise RequestError(429, f"too many refused requests from all sources together; retry in {wait} s")

    def fail(self, source: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        key = limiter_key(source)
        with self._lock:
            if key not in self._failures and len(self._failures) >= self.MAX_SOURCES:
                # Failures sprayed from many addresses must not grow memory
                # for ever: forget every source whose window has passed ...
                for stale in list(self._failures):
                    self._recent(stale, now)
                # ... and, were they all recent, the longest known (the cap
                # on all sources together still holds them back).
                while len(self._failures) >= self.MAX_SOURCES:
                    del self._failures[next(iter(self._failures))]
            recent = self._failures.setdefault(key, [])
            recent.append(now)
            # Only the newest `allowed` decide a refusal.
            del recent[:-self.allowed]
            self._all.append(now)
            while len(self._all) > self.allowed_in_all:
                self._all.popleft()


def header_values(headers, name: str) -> list[str]:
    """Every value of a header, from http.server's message or a plain dict."""
    if hasattr(headers, "get_all"):
        return headers.get_all(name) or []
    value = headers.get(name)
    return [value] if value is not None else []


def parse_networks(entries) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def forwarded_client(source: str, forwarded_for: list[str], trusted_proxies) -> str:
    """The client a request is from: the socket's source, or, when that is a
    trusted proxy, the last address in X-Forwarded-For that is not one.
    Proxies append what they saw, so anything left of the first untrusted
    hop from the right was written by the client and may be forged."""

    def trusted(address) -> bool:
        return any(address in network for network in trusted_proxies)

    try:
        if not trusted_proxies or not trusted(ipaddress.ip_address(source)):
            return source
    except ValueError:
        return source
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            # Not an address: the proxy's own way of writing it, or garbage;
            # count the proxy rather than guess.
            return source
        if not trusted(address):
            return plain_address(str(address))
    return source


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class JoinService:
    def __init__(self, node: Node):
        self.node = node
        self.tokens = TokenStore(node.paths.tokens_file)
        self.limiter = FailureLimiter()
        self.trusted_proxies = parse_networks(node.config.api_trusted_proxies)
        # For a request about a link this node does not have: the same
        # work as for one it has (an X25519 and HKDF), so the time an answer
        # takes does not list the links either.
        self._decoy_pair = keys.keypair()

    # ------------------------------------------------------------ helpers
    def from_mesh(self, source: str, local: str) -> bool:
        """A request that came over the mesh, to this node's mesh address,
        needs no token: it comes from a node that already joined."""
        try:
            src = ipaddress.ip_address(source)
            dst = ipaddress.ip_address(local)
        except ValueError:
            return False
        plan = self.node.plan
        own = {plan.loopback4(self.node.node_id), plan.loopback6(self.node.node_id)}
        if dst not in own or not (src in plan.subnet or src in plan.subnet6):
            return False
        # The way back to the source must be one of this node's links: a
        # mesh address spoofed on the underlay (api.public) does not pass.
        return self.route_is_mesh_link(str(src))

    def route_is_mesh_link(self, address: str) -> bool:
        interface = netlink.route_interface(address)
        return interface is not None and linkfile.exists(self.node.paths, interface)

    def _authorise(self, token: str | None, source: str, local: str, consume: bool, peer_id: int) -> bool:
        """True when a token use was consumed (so it can be refunded).

        Without a token, only a node of the mesh is served, and only as
        itself: the request must come over a mesh link from the loopback of
        the node whose ID it claims. (A member claiming another ID could
        fill this node's link block, and a client could make itself transit.)"""
        if self.from_mesh(source, local):
            if meshview.node_of_address(self.node.plan, source) == peer_id:
                return False
            if not token:
                raise RequestError(403, f"a request without a token from inside the mesh must claim the ID of "
                                        f"its source address: {source} is not node {peer_id}'s loopback")
        # The limiter has counted in handle(), from the client behind any proxy.
        if not token:
            raise RequestError(401, "a join token is required (see 'wgmesh token' on the node joined)")
        ok = self.tokens.consume(token) if consume else self.tokens.check(token)
        if not ok:
            raise RequestError(403, "the token is not valid (wrong, expired, used up or revoked)")
        return consume

    def _check_signed(self, method: str, path: str, headers, raw: bytes, body: dict,
                      allow: set[str]) -> tuple[joinapi.SignedRequest, linkfile.Link]:
        """The request and the link it is about, once signed by that link's peer."""
        request = joinapi.parse_signed(body, self.node.plan, self.node.node_id, allow)
        name = linkfile.link_name(request.peer_id, request.family)
        link = linkfile.load(self.node.paths, name) if linkfile.exists(self.node.paths, name) else None
        # No link and a wrong key get the same answer (and the same work, a
        # signature checked against a key nobody has): otherwise asking for
        # every ID without a key would list this node's links.
        known = link is not None
        try:
            key = join.link_signing_key(self.node, link) if known else linkkeys.signing_key(*self._decoy_pair)
            joinapi.verify_signature(key, method, path, raw,
                                     headers.get(joinapi.SIGNATURE_HEADER))
            if not known:
                raise RequestError(403, "no link")
        except RequestError as error:
            if error.status != 403:
                raise
            raise RequestError(404, f"this node has no link to node {request.peer_id} over IPv{request.family} "
                                    "whose key signed this request") from None
        join.check_replay(self.node, name, request.timestamp)
        return request, link

    def _carries_a_valid_token(self, raw: bytes) -> bool:
        try:
            token = joinapi.parse_body(raw).get("token")
        except RequestError:
            return False
        return isinstance(token, str) and self.tokens.check(token)

    def client_of(self, headers, source: str) -> str:
        """Who the limiter and the logs hold a request against (see forwarded_client)."""
        return forwarded_client(source, header_values(headers, FORWARDED_FOR), self.trusted_proxies)

    def refused_by_http(self, error: RequestError, method: str, path: str, headers, source: str,
                        local: str, connection=None) -> None:
        """A request the HTTP layer refused before handle() saw it."""
        self._refused(error, method, path, self.client_of(headers, source), source,
                      not self.from_mesh(source, local))

    def _refused(self, error: RequestError, method: str, path: str, client: str, source: str,
                 outsider: bool) -> None:
        # Every refusal from outside counts, bad input as much as a bad
        # token; a peer inside the mesh on a newer version never locks
        # itself out.
        if outsider and 400 <= error.status < 500 and error.status not in UNCOUNTED_STATUSES:
            self.limiter.fail(client)
        log.event("api-refused", f"{method} {_shorten(path)} from {client} refused: {error.reason}",
                  level="notice", source=client, status=error.status, proxy=source if client != source else None)

    # ----------------------------------------------------------- routes
    def handle(self, method: str, path: str, headers, raw: bytes, source: str, local: str,
               connection=None) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        """(status, document, work to do once the reply is sent). The
        connection is for a helper across a process boundary (joinhelper),
        which reads the addresses from it itself."""
        routes = {
            ("POST", "/connectivity"): self.connectivity,
            ("POST", "/connect"): self.connect,
            ("PATCH", "/update"): self.update,
            ("POST", "/disconnect"): self.disconnect,
        }
        handler = routes.get((method, path))
        client = self.client_of(headers, source)
        # Only the socket's own source says "inside the mesh", never a header.
        outsider = not self.from_mesh(source, local)
        try:
            if outsider:
                # A valid token passes the cap on all sources together: it
                # cannot be guessed, so the cap only has to stop the guessing.
                self.limiter.check(client, exempt=lambda: self._carries_a_valid_token(raw))
            if handler is None:
                if any(p == path for _, p in routes):
                    raise RequestError(405, f"{method} is not allowed on {path}")
                raise RequestError(404, f"no such endpoint {_shorten(path)}")
            body = joinapi.parse_body(raw)
            joinapi.take_protocol(body)
            result = handler(headers, raw, body, source, local)
        except RequestError as error:
            self._refused(error, method, path, client, source, outsider)
            return error.status, {"error": error.reason}, None
        except WgmeshError as error:
            log.error(f"{method} {path} from {client} failed: {error}", source=client)
            return 500, {"error": str(error)}, None
        except Exception as error:  # noqa: BLE001
            # A bug, not the client's fault: still an answer, never a
            # dropped connection; the details go to the journal only.
            log.error(f"{method} {path} from {client} failed: {type(error).__name__}: {error}", source=client,
                      traceback=traceback.format_exc())
            return 500, {"error": "internal error of the join-server (its journal has the details)"}, None
        after = None
        if isinstance(result, tuple):
            result, after = result
        return 200, {joinapi.PROTOCOL_FIELD: joinapi.PROTOCOL, **result}, after

    def connectivity(self, headers, raw, body, source, local):
        request = joinapi.parse_connectivity(body, self.node.plan, self.node.node_id)
        self._authorise(request.token, source, local, consume=False, peer_id=request.peer_id)
        join.check_collision(self.node, request.peer_id, source)
        return join.connectivity_info(self.node)

    def connect(self, headers, raw, body, source, local):
        request = joinapi.parse_connect(body, self.node.plan, self.node.node_id)
        consumed = self._authorise(request.token, source, local, consume=True, peer_id=request.peer_id)
        try:
            answer = join.serve_connect(self.node, request, source, raw, headers.get(joinapi.SIGNATURE_HEADER))
        except BaseException:
            if consumed:
                self.tokens.refund(request.token)
            raise
        log.event("join", f"node {request.peer_id} joined from {source}", peer=request.peer_id, link=answer.name)
        return answer.to_wire()

    def update(self, headers, raw, body, source, local):
        request, link = self._check_signed("PATCH", "/update", headers, raw, body, {"public_key"})
        name = link.name
        if not self._from_link_peer(link, source, local):
            raise RequestError(403, f"/update of {name} must come over the mesh from node {link.peer_id} "
                                    f"or from the link's current endpoint, not from {source}")
        if request.public_key is None or request.public_key == link.peer_public_key:
            return {"name": name, "changed": False}
        private_key = linkfile.read_secret(self.node.paths.link_key(name))
        try:
            psk = linkkeys.preshared_key(private_key, request.public_key)
        except WgmeshError as error:
            raise RequestError(400, str(error)) from None
        linkfile.save(self.node.paths, replace(link, peer_public_key=request.public_key), private_key, psk)
        log.event("link-updated", f"link {name}: node {request.peer_id} changed its key", link=name, peer=request.peer_id)

        def apply() -> None:
            self.node.supervisor.reload_link(name)

        # Answer over the link as it is; the peer switches once it has the answer.
        return {"name": name, "changed": True}, apply

    def _from_link_peer(self, link: linkfile.Link, source: str, local: str) -> bool:
        """Over the mesh from the peer itself (its loopback or its end of
        the link), or from where its WireGuard packets come from now."""
        if source in (link.peer4, link.peer6) or meshview.node_of_address(self.node.plan, source) == link.peer_id:
            return self.from_mesh(source, local) or netlink.route_interface(source) == link.name
        return source in join.current_endpoint_hosts(self.node, link)

    def disconnect(self, headers, raw, body, source, local):
        request, link = self._check_signed("POST", "/disconnect", headers, raw, body, set())
        name = link.name

        def remove() -> None:
            join.remove_local(self.node, name)
            log.event("disconnect", f"node {request.peer_id} disconnected {name}", link=name, peer=request.peer_id)

        # The request may have come over this very link: answer first, or the
        # answer would be lost with the interface.
        return {"name": name, "removed": True}, remove


# Every request, request line and headers and body, must be in within this
# time: a deadline per recv would let a byte a second hold a thread forever.
REQUEST_DEADLINE = 10.0
# Connections served at once; beyond them a connection is turned away at
# once, on the accepting thread (the unit's TasksMax= is set above this).
MAX_CONNECTIONS = 64
# ... and from one source (an address, or an IPv6 /64) at once: one host
# must not hold every slot with connections that never send a byte.
MAX_CONNECTIONS_PER_SOURCE = 8


class ConnectionSlots:
    """Connections being served: at most `total` at once, and at most
    `per_source` from one source (limiter_key)."""

    def __init__(self, total: int = MAX_CONNECTIONS, per_source: int = MAX_CONNECTIONS_PER_SOURCE):
        self.total = total
        self.per_source = per_source
        self._by_source: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, source: str) -> bool:
        key = limiter_key(source)
        with self._lock:
            if sum(self._by_source.values()) >= self.total or self._by_source.get(key, 0) >= self.per_source:
                return False
            self._by_source[key] = self._by_source.get(key, 0) + 1
            return True

    def release(self, source: str) -> None:
        key = limiter_key(source)
        with self._lock:
            left = self._by_source.get(key, 0) - 1
            if left > 0:
                self._by_source[key] = left
            else:
                self._by_source.pop(key, None)
# How long work that follows an answer (removing a link) waits for the
# client to have read it.
AFTER_ANSWER_WAIT = 3.0
# A join request's line and headers take a few hundred bytes; http.server
# alone would read 100 header lines of 64 KiB each.
MAX_HEAD = 16 * 1024


def _raw_answer(status: int, document: dict) -> bytes:
    payload = (json.dumps(document) + "\n").encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload


BUSY_ANSWER = _raw_answer(503, {"error": "the join-server is serving as many connections as it takes "
                                         "(from this source, or in all); retry in a few seconds"})


class JoinHandler(BaseHTTPRequestHandler):
    server_version = "wgmesh-join-server"
    protocol_version = "HTTP/1.1"
    # http.server answers an HTTP/0.9 request ("GET /") without a status
    # line; every answer here has one. Also the defaults for a request
    # refused before its request line was read.
    default_request_version = request_version = "HTTP/1.0"
    requestline = ""
    command = path = "-"
    service: JoinService  # set on the server class

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = BoundedReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        deadline = self.server.request_deadline
        self._reader.start(deadline, MAX_HEAD)
        try:
            super().handle_one_request()
        except DeadlinePassed:
            self.close_connection = True
            # An idle keep-alive connection just ends; a request begun gets a reason.
            if self._reader.received:
                self._refuse(RequestError(408, f"the request was not complete within {deadline:g} s"))
        except SizeLimitExceeded:
            self._refuse(RequestError(431, f"request line and headers larger than {MAX_HEAD} bytes"))

    def _addresses(self) -> tuple[str, str]:
        return plain_address(self.client_address[0]), plain_address(self.connection.getsockname()[0])

    def _read_body(self) -> bytes:
        if self.headers.get_all("Transfer-Encoding"):
            raise RequestError(411, "Transfer-Encoding is not accepted: send the body with a Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        if len(lengths) > 1:
            raise RequestError(400, "more than one Content-Length header")
        text = lengths[0].strip()
        if not (text.isascii() and text.isdigit()):
            raise RequestError(400, f"Content-Length must be a decimal number of bytes, not {_shorten(text, 20)!r}")
        if len(text) > 9 or int(text) > joinapi.MAX_BODY:
            raise RequestError(413, f"request body larger than {joinapi.MAX_BODY} bytes")
        length = int(text)
        # The head's budget spent, the body gets exactly what it declared
        # (some of it may be buffered already).
        self._reader.budget = self._reader.received + length
        try:
            raw = self.rfile.read(length)
        except DeadlinePassed:
            raise RequestError(408, f"the request was not complete within {self.server.request_deadline:g} s") from None
        except SizeLimitExceeded:
            raise RequestError(413, f"request body larger than {joinapi.MAX_BODY} bytes") from None
        if len(raw) < length:
            raise RequestError(400, "the body ended before its Content-Length")
        return raw

    def _serve(self) -> None:
        source, local = self._addresses()
        try:
            raw = self._read_body()
        except RequestError as error:
            return self._refuse(error)
        status, document, after = self.server.service.handle(self.command, self.path, self.headers, raw, source, local,
                                                             connection=self.connection)
        self._reply(status, document)
        if after:
            self.wfile.flush()
            self.close_connection = True
            self._await_hang_up()
            try:
                after()
            except Exception as error:  # noqa: BLE001 - the answer is sent; the journal gets the rest
                log.error(f"{self.command} {self.path}: {error}")

    def _await_hang_up(self) -> None:
        """Wait until the client has read the answer and hung up (at most
        a few seconds): the work after the answer may take down the link
        the answer travels over, and a segment still queued then is lost."""
        deadline = time.monotonic() + AFTER_ANSWER_WAIT
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                if not self.connection.recv(4096):
                    return
        except OSError:
            pass

    def _refuse(self, error: RequestError) -> None:
        """Answer a request refused before the service saw it, and end the
        connection: what follows on it cannot be trusted to start a request."""
        self.close_connection = True
        source, local = self._addresses()
        self.server.service.refused_by_http(error, self.command or "-", self.path or "-",
                                            getattr(self, "headers", None) or {}, source, local,
                                            connection=self.connection)
        try:
            self._reply(error.status, {"error": error.reason})
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (request line, header count and size,
        # unknown methods): one JSON line like every other answer.
        if code == HTTPStatus.NOT_IMPLEMENTED:
            # An unknown method is the client's mistake, as a known one on
            # the wrong path is (405), not a feature this server lacks.
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{_shorten(self.command or '')} is not allowed here"
        self._refuse(RequestError(code, message or HTTPStatus(code).phrase))

    def _reply(self, status: int, document: dict) -> None:
        payload = (json.dumps(document) + "\n").encode()
        # Writes get the same bound as reads: a client that never reads its
        # answer must not hold the thread either.
        self.connection.settimeout(self.server.request_deadline)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PATCH = do_GET = do_PUT = do_DELETE = _serve

    def log_request(self, code="-", size="-") -> None:
        pass

    def log_message(self, format: str, *args) -> None:
        # Requests are logged as events by the service; no access-log noise.
        pass


class JoinServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, service: JoinService, sock: socket.socket, slots: ConnectionSlots | None = None,
                 request_deadline: float = REQUEST_DEADLINE):
        self.service = service
        self.slots = slots or ConnectionSlots()
        self.request_deadline = request_deadline
        super().__init__(sock.getsockname()[:2], JoinHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(plain_address(client_address[0])):
            # Turned away on the accepting thread: a thread per waiting
            # socket is what the cap is there to prevent.
            try:
                request.setblocking(False)
                request.send(BUSY_ANSWER)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release(plain_address(client_address[0]))
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release(plain_address(client_address[0]))

    def handle_error(self, request, client_address) -> None:
        # One line in the journal rather than a traceback on stderr.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        log.warning(f"join-server: connection from {client_address[0]} failed: {type(error).__name__}: {error}",
                    traceback=traceback.format_exc())


def listening_sockets(node: Node) -> list[socket.socket]:
    """Sockets passed by systemd, else new ones on the configured address."""
    passed = servicemanager.passed_sockets()
    if passed:
        return passed
    port = node.config.api_port
    if node.config.api_public:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = ("::", port)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (str(node.plan.loopback4(node.node_id)), port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise WgmeshError(f"cannot listen on {address[0]} port {port}: {error.strerror}") from None
    sock.listen(64)
    return [sock]


def serve_node(node: Node, sockets: list[socket.socket] | None = None) -> None:
    """The whole join API in this process (no systemd, or tests)."""
    serve(JoinService(node), sockets or listening_sockets(node), f"join-server of node {node.node_id}")


def serve(service, sockets: list[socket.socket], description: str) -> None:
    """HTTP on sockets for service: a JoinService, or under systemd the
    privileged helper's client (joinhelper.HelperClient)."""
    # One cap for every socket (IPv4 and IPv6 may be two).
    slots = ConnectionSlots()
    servers = [JoinServer(service, sock, slots) for sock in sockets]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info(f"{description} listening on " + ", ".join(str(s.socket.getsockname()[:2]) for s in servers))
    servicemanager.notify("READY=1", unset_environment=True)
    try:
        servers[0].serve_forever()
    finally:
        for server in servers:
            server.server_close()

