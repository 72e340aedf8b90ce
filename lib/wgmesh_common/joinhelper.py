"""The privileged half of the join API, and the way the HTTP half reaches it.

Under systemd the join API is two processes. wgmesh-join-server faces the
network: it runs as the unprivileged `wgmesh` user with no capabilities,
parses HTTP within its size and time limits, and hands each request to
wgmesh-join-helper over a local socket (/run/wgmesh/join-helper.sock,
root:wgmesh 0660). The helper runs as root and answers only the join API's
own requests (JoinService.handle: the four routes, each validated again
there); it is the side that reads tokens and keys, writes link files and
calls systemctl. A bug in the HTTP parsing then gives an attacker an
unprivileged process that can ask for joins, nothing more.

Only the front end's user and root may connect (the socket's mode, and
SO_PEERCRED checked again). The helper does not take the front end's word
for where a request comes from ("inside the mesh" is decided on it): the
front end passes the client's TCP connection itself (SCM_RIGHTS), and the
helper reads both addresses from it.

Wire format: first one byte with the client's connection attached, then,
both ways, a 4-byte big-endian length and a JSON object.
  request  {"op": "handle", "method", "path", "headers": {name: [values]},
            "raw": base64}
           {"op": "refused", "status", "reason", "method", "path",
            "headers"}   (a refusal of the HTTP layer)
  answer   {"status", "document", "deferred": bool}
When deferred, the front end writes {"op": "sent"} once its HTTP answer is
out, and only then does the helper do the deferred work (a /disconnect
removes the very link the answer may travel over).
"""

import base64
import http.client
import ipaddress
import json
import os
import pwd
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from . import log, servicemanager
from .errors import WgmeshError
from .joinapi import MAX_BODY, RequestError

FRONT_END_USER = "wgmesh"
MAX_MESSAGE = 4 * MAX_BODY + 64 * 1024  # the body in base64, the headers, the addresses
IO_TIMEOUT = 60.0  # a /connect makes a link (files, unit, bird) before it answers
SENT_TIMEOUT = 15.0
MAX_HELPER_CONNECTIONS = 32

UNAVAILABLE = (503, {"error": "the join service is not available right now (its privileged helper does not "
                              "answer); retry in a few seconds"}, None)


# ------------------------------------------------------------------ wire

def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    payload = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        data += chunk
    return data


def receive_message(sock: socket.socket) -> dict[str, Any]:
    (size,) = struct.unpack(">I", _receive_exactly(sock, 4))
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes, more than {MAX_MESSAGE}")
    message = json.loads(_receive_exactly(sock, size))
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


def header_lists(headers) -> dict[str, list[str]]:
    """The request's headers as plain data (http.server's message or a dict)."""
    result: dict[str, list[str]] = {}
    for name, value in headers.items():
        result.setdefault(str(name), []).append(str(value))
    return result


def headers_from(data) -> http.client.HTTPMessage:
    """Headers with the get()/get_all() of http.server's, from plain data."""
    message = http.client.HTTPMessage()
    if not isinstance(data, dict):
        raise ValueError("headers must be an object")
    for name, values in data.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError("header values must be lists of strings")
        for value in values:
            message[name] = value
    return message


# ------------------------------------------------------------ front end

class HelperClient:
    """What the HTTP front end calls instead of a JoinService: the same
    handle(), answered by the privileged helper."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(self.socket_path)
        return sock

    def _connect_with(self, connection: socket.socket) -> socket.socket:
        sock = self._connect()
        try:
            socket.send_fds(sock, [b"C"], [connection.fileno()])
        except OSError:
            sock.close()
            raise
        return sock

    def handle(self, method: str, path: str, headers, raw: bytes, source: str, local: str,
               connection: socket.socket | None = None) -> tuple[int, dict[str, Any], Callable[[], None] | None]:
        if connection is None:
            raise WgmeshError("the join helper needs the client's connection")
        try:
            sock = self._connect_with(connection)
        except OSError as error:
            log.error(f"the join helper at {self.socket_path} does not answer: {error.strerror or error}")
            return UNAVAILABLE
        try:
            send_message(sock, {"op": "handle", "method": method, "path": path, "headers": header_lists(headers),
                                "raw": base64.b64encode(raw).decode()})
            answer = receive_message(sock)
            status, document = int(answer["status"]), answer["document"]
            if not isinstance(document, dict):
                raise ValueError("the document is not an object")
        except (OSError, ValueError, KeyError, TypeError) as error:
            sock.close()
            log.error(f"the join helper failed on {method} {path}: {error}")
            return UNAVAILABLE
        if not answer.get("deferred"):
            sock.close()
            return status, document, None

        def sent() -> None:
            try:
                send_message(sock, {"op": "sent"})
            except OSError as error:
                raise WgmeshError(f"the join helper did not take the go-ahead: {error}") from None
            finally:
                sock.close()

        return status, document, sent

    def refused_by_http(self, error: RequestError, method: str, path: str, headers, source: str,
                        local: str, connection: socket.socket | None = None) -> None:
        """A refusal of the HTTP layer, counted by the helper's limiter."""
        if connection is None:
            return
        try:
            with self._connect_with(connection) as sock:
                send_message(sock, {"op": "refused", "status": error.status, "reason": error.reason,
                                    "method": method, "path": path, "headers": header_lists(headers)})
                receive_message(sock)
        except (OSError, ValueError) as failure:
            log.warning(f"the join helper did not count a refused request: {failure}")


# ---------------------------------------------------------------- helper

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


def client_addresses(connection: socket.socket) -> tuple[str, str]:
    """(source, local) of the client connection the front end passed along
    with its first byte."""
    _, fds, _, _ = socket.recv_fds(connection, 1, 1)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request came without its client connection")
    with socket.socket(fileno=fds[0]) as client:
        if client.type != socket.SOCK_STREAM or client.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError("the connection passed is not a TCP connection")
        return plain_address(client.getpeername()[0]), plain_address(client.getsockname()[0])


def allowed_peer_uids() -> set[int]:
    uids = {0}
    try:
        uids.add(pwd.getpwnam(FRONT_END_USER).pw_uid)
    except KeyError:
        pass
    return uids


def peer_uid(sock: socket.socket) -> int:
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


class HelperServer:
    """Accepts the front end's connections; one thread each, at most
    MAX_HELPER_CONNECTIONS at once."""

    def __init__(self, service, sock: socket.socket, allowed_uids: set[int] | None = None):
        self.service = service
        self.sock = sock
        self.allowed_uids = allowed_peer_uids() if allowed_uids is None else allowed_uids
        self.slots = threading.BoundedSemaphore(MAX_HELPER_CONNECTIONS)

    def serve_forever(self) -> None:
        while True:
            connection, _ = self.sock.accept()
            if not self.slots.acquire(blocking=False):
                connection.close()
                continue
            threading.Thread(target=self._serve_one, args=(connection,), daemon=True).start()

    def _serve_one(self, connection: socket.socket) -> None:
        try:
            with connection:
                uid = peer_uid(connection)
                if uid not in self.allowed_uids:
                    log.warning(f"join helper: refused a connection from uid {uid}")
                    return
                connection.settimeout(IO_TIMEOUT)
                self.answer(connection)
        except (OSError, ValueError) as error:
            log.warning(f"join helper: a request from the front end failed: {error}")
        finally:
            self.slots.release()

    def answer(self, connection: socket.socket) -> None:
        source, local = client_addresses(connection)
        message = receive_message(connection)
        op = message.get("op")
        try:
            headers = headers_from(message.get("headers", {}))
            method, path = str(message["method"]), str(message["path"])
        except (KeyError, ValueError) as error:
            raise ValueError(f"a malformed request: {error}") from None
        if op == "refused":
            self.service.refused_by_http(RequestError(int(message["status"]), str(message["reason"])),
                                         method, path, headers, source, local)
            send_message(connection, {"status": 0, "document": {}, "deferred": False})
            return
        if op != "handle":
            raise ValueError(f"unknown operation {op!r}")
        raw = base64.b64decode(str(message.get("raw", "")), validate=True)
        status, document, after = self.service.handle(method, path, headers, raw, source, local)
        send_message(connection, {"status": status, "document": document, "deferred": after is not None})
        if after is None:
            return
        connection.settimeout(SENT_TIMEOUT)
        try:
            go = receive_message(connection)
        except (OSError, ValueError) as error:
            # The answer may not have reached the client: do the work anyway,
            # as a single process would have after writing it.
            log.warning(f"join helper: no go-ahead from the front end ({error}); doing the deferred work")
            go = {"op": "sent"}
        if go.get("op") == "sent":
            try:
                after()
            except WgmeshError as error:
                log.error(f"{method} {path}: {error}")


def listening_socket(path: str | None) -> socket.socket:
    """The socket systemd passes (wgmesh-join-helper.socket), else a new
    one at path, for root only (tests, machines without systemd)."""
    if path is None:
        passed = servicemanager.passed_sockets()
        if not passed:
            raise WgmeshError("no socket passed by systemd: give --socket PATH")
        return passed[0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock
