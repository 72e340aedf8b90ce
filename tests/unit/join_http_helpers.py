"""A real join-server on 127.0.0.1 and raw sockets to speak to it, for the
tests that attack the join API over HTTP (imported by name)."""

import json
import socket
import threading
from dataclasses import dataclass

from wgmesh_common import netlink
from wgmesh_common.joinserver import JoinServer


def quiet_host(monkeypatch) -> None:
    """This machine's routes and addresses are the rtnetlink boundary: the
    join-server sees no routes, no underlay of its own, and the way back
    to a mesh address is the link to node 8."""
    monkeypatch.setattr(netlink, "routes", lambda family, table: [])
    monkeypatch.setattr(netlink, "underlay_addresses", dict)
    monkeypatch.setattr(netlink, "route_interface",
                        lambda address: "wgm8" if address.startswith(("10.", "fd10:")) else "eth0")


class LiveJoinServer:
    """A JoinServer on 127.0.0.1 and an ephemeral port, served from a thread."""

    def __init__(self, service, **options):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = JoinServer(service, sock, **options)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def connect(self, timeout: float = 20.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def document(self):
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer | None:
    """The next answer on sock (1xx interim answers skipped); None when the
    server closed the connection without one."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                if buffer:
                    raise AssertionError(f"the connection ended inside an answer: {buffer[:200]!r}")
                return None
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version in ("HTTP/1.0", "HTTP/1.1"), lines[0]
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        if 100 <= int(status) < 200:
            continue
        length = int(headers["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("the connection ended inside an answer's body")
            buffer += chunk
        return Answer(int(status), headers, buffer[:length])


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has ended the connection (EOF or reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def exchange(server: LiveJoinServer, data: bytes) -> tuple[Answer | None, socket.socket]:
    """Send raw bytes on a new connection; the answer and the (open) socket."""
    sock = server.connect()
    sock.sendall(data)
    return read_answer(sock), sock


def request_bytes(method: str, path: str, body: bytes, headers: dict[str, str] | None = None,
                  length: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is None:
        length = str(len(body))
    if length != "":
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body


def one_line_error(answer: Answer) -> str:
    """The answer's reason, checked to be one line of JSON {"error": ...}."""
    assert answer.headers.get("content-type") == "application/json", answer.headers
    document = answer.document
    assert set(document) == {"error"}, document
    reason = document["error"]
    assert isinstance(reason, str) and reason.strip() and "\n" not in reason, reason
    return reason
