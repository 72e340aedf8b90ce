"""The join-server: HTTP glue around JoinService, which holds the logic.

JoinService.handle() takes (method, path, headers, body, source, local) and
returns (status, document), so it is tested without sockets; JoinHandler
only moves bytes. Socket activation (LISTEN_FDS) is honoured.
"""

import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import join, joinapi, linkfile, linkkeys, log, meshview, netlink
from .errors import WgmeshError
from .joinapi import RequestError
from .node import Node
from .tokens import TokenStore
from .tomlio import write_atomic

FAILURES_ALLOWED = 5
FAILURE_WINDOW = 60.0


class FailureLimiter:
    """Failed token attempts per source address, in a sliding window."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW):
        self.allowed = allowed
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(source, []) if now - t < self.window]
        if recent:
            self._failures[source] = recent
        else:
            self._failures.pop(source, None)
        return recent

    def check(self, source: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(source, now)
            if len(recent) >= self.allowed:
                wait = int(self.window - (now - recent[0])) + 1
                raise RequestError(429, f"too many failed token attempts from {source}; retry in {wait} s")

    MAX_SOURCES = 10000

    def fail(self, source: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= self.MAX_SOURCES:
                # Failures sprayed from many addresses must not grow memory
                # for ever: forget every source whose window has passed.
                for stale in list(self._failures):
                    self._recent(stale, now)
            self._failures.setdefault(source, []).append(now)


class JoinService:
    def __init__(self, node: Node):
        self.node = node
        self.tokens = TokenStore(node.paths.tokens_file)
        self.limiter = FailureLimiter()
        self._replay_lock = threading.Lock()

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
        self.limiter.check(source)
        if not token:
            self.limiter.fail(source)
            raise RequestError(401, "a join token is required (see 'wgmesh token' on the node joined)")
        ok = self.tokens.consume(token) if consume else self.tokens.check(token)
        if not ok:
            self.limiter.fail(source)
            raise RequestError(403, "the token is not valid (wrong, expired, used up or revoked)")
        return consume

    def _link_for(self, peer_id: int, family: int) -> tuple[linkfile.Link, bytes]:
        name = linkfile.link_name(peer_id, family)
        if not linkfile.exists(self.node.paths, name):
            raise RequestError(404, f"this node has no link to node {peer_id} over IPv{family}")
        link = linkfile.load(self.node.paths, name)
        return link, join.link_signing_key(self.node, link)

    def _check_signed(self, method: str, path: str, headers, raw: bytes, body: dict, allow: set[str]):
        request = joinapi.parse_signed(body, self.node.plan, self.node.node_id, allow)
        link, key = self._link_for(request.peer_id, request.family)
        name = link.name
        joinapi.verify_signature(key, method, path, raw, headers.get(joinapi.SIGNATURE_HEADER))
        with self._replay_lock:
            marker = self.node.paths.replay_dir / name
            try:
                last = float(marker.read_text())
            except (OSError, ValueError):
                last = None
            joinapi.check_fresh(request.timestamp, last)
            write_atomic(marker, f"{request.timestamp!r}\n".encode(), 0o600)
        return request, name

    # ----------------------------------------------------------- routes
    def handle(self, method: str, path: str, headers, raw: bytes, source: str,
               local: str) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        """(status, document, work to do once the reply is sent)."""
        routes = {
            ("POST", "/connectivity"): self.connectivity,
            ("POST", "/connect"): self.connect,
            ("PATCH", "/update"): self.update,
            ("POST", "/disconnect"): self.disconnect,
        }
        handler = routes.get((method, path))
        if handler is None:
            if any(p == path for _, p in routes):
                return 405, {"error": f"{method} is not allowed on {path}"}, None
            return 404, {"error": f"no such endpoint {path}"}, None
        try:
            body = joinapi.parse_body(raw)
            joinapi.take_protocol(body)
            result = handler(headers, raw, body, source, local)
        except RequestError as error:
            log.event("api-refused", f"{method} {path} from {source} refused: {error.reason}", level="notice",
                      source=source, status=error.status)
            return error.status, {"error": error.reason}, None
        except WgmeshError as error:
            log.error(f"{method} {path} from {source} failed: {error}", source=source)
            return 500, {"error": str(error)}, None
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
        log.event("join", f"node {request.peer_id} joined from {source}", peer=request.peer_id, link=answer["name"])
        return answer

    def update(self, headers, raw, body, source, local):
        request, name = self._check_signed("PATCH", "/update", headers, raw, body, {"public_key"})
        link = linkfile.load(self.node.paths, name)
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
        request, name = self._check_signed("POST", "/disconnect", headers, raw, body, set())

        def remove() -> None:
            join.remove_local(self.node, name)
            log.event("disconnect", f"node {request.peer_id} disconnected {name}", link=name, peer=request.peer_id)

        # The request may have come over this very link: answer first, or the
        # answer would be lost with the interface.
        return {"name": name, "removed": True}, remove


def plain_address(address: str) -> str:
    """198.18.0.2 rather than ::ffff:198.18.0.2 from a dual-stack socket, so
    logs and the per-source limiter see one address per client."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(parsed)


class JoinHandler(BaseHTTPRequestHandler):
    server_version = "wgmesh-join-server"
    protocol_version = "HTTP/1.1"
    service: JoinService  # set on the server class

    def _serve(self) -> None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            return self._reply(400, {"error": "bad Content-Length"})
        if length > joinapi.MAX_BODY:
            self.close_connection = True
            return self._reply(413, {"error": f"request body larger than {joinapi.MAX_BODY} bytes"})
        raw = self.rfile.read(length) if length else b""
        status, document, after = self.server.service.handle(
            self.command, self.path, self.headers, raw,
            plain_address(self.client_address[0]), plain_address(self.connection.getsockname()[0]))
        self._reply(status, document)
        if after:
            self.wfile.flush()
            self.close_connection = True
            try:
                after()
            except WgmeshError as error:
                log.error(f"{self.command} {self.path}: {error}")

    def _reply(self, status: int, document: dict) -> None:
        payload = (json.dumps(document) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PATCH = do_GET = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args) -> None:
        # Requests are logged as events by the service; no access-log noise.
        pass


class JoinServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, service: JoinService, sock: socket.socket):
        self.service = service
        super().__init__(sock.getsockname()[:2], JoinHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family


def listening_sockets(node: Node) -> list[socket.socket]:
    """Sockets passed by systemd, else new ones on the configured address."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS"):
        count = int(os.environ["LISTEN_FDS"])
        return [socket.socket(fileno=3 + i) for i in range(count)]
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


def serve(node: Node, sockets: list[socket.socket] | None = None) -> None:
    service = JoinService(node)
    servers = [JoinServer(service, sock) for sock in (sockets or listening_sockets(node))]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info(f"join-server of node {node.node_id} listening on "
             + ", ".join(str(s.socket.getsockname()[:2]) for s in servers))
    _notify_ready()
    try:
        servers[0].serve_forever()
    finally:
        for server in servers:
            server.server_close()


def _notify_ready() -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon

        # Unset: what this server runs (systemctl, wgmesh-link) must not
        # inherit the socket and speak to systemd as if it were this service.
        daemon.notify("READY=1", unset_environment=True)
    except ImportError:
        pass
