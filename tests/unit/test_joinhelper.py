"""The join API split in two: the unprivileged front end hands requests to
the privileged helper over a local socket, and the helper serves only the
front end's user and root."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

import pytest

from wgmesh_common import joinapi, joinhelper
from wgmesh_common.joinserver import JoinService
from wgmesh_common.tokens import TokenStore


class Recorder:
    """A service that records what the helper hands it (the helper's own
    logic is JoinService's, tested on its own)."""

    def __init__(self, deferred=False):
        self.calls, self.done, self.refusals = [], threading.Event(), []
        self.deferred = deferred

    def handle(self, method, path, headers, raw, source, local):
        self.calls.append((method, path, headers.get_all("X-Forwarded-For"), raw, source, local))
        return 200, {"ok": True}, (self.done.set if self.deferred else None)

    def refused_by_http(self, error, method, path, headers, source, local):
        self.refusals.append((error.status, method, source))


@pytest.fixture
def helper():
    # Not under tmp_path, whose parents only root may enter: another user must reach the socket.
    directory = tempfile.mkdtemp(prefix="wgmesh-helper-")
    os.chmod(directory, 0o755)

    def start(service, allowed_uids=None):
        path = os.path.join(directory, "helper.sock")
        sock = joinhelper.listening_socket(path)
        server = joinhelper.HelperServer(service, sock, allowed_uids)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return joinhelper.HelperClient(path), path
    yield start
    shutil.rmtree(directory)


def closed_without_answer(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def tcp_client():
    """A client's TCP connection as the front end holds it (accepted on 127.0.0.1)."""
    listener = socket.create_server(("127.0.0.1", 0))
    outside = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    yield accepted
    for sock in (accepted, outside, listener):
        sock.close()


def test_the_front_end_hands_the_whole_request_over(helper, tcp_client):
    service = Recorder()
    client, _ = helper(service)
    headers = {"X-Forwarded-For": "203.0.113.9", "Content-Type": "application/json"}
    raw = b'{"id": 2}\x00\xff'
    # The front end claims a mesh address; the helper reads the connection's own.
    status, document, after = client.handle("POST", "/connectivity", headers, raw, "10.0.2.1", "10.0.0.1",
                                            connection=tcp_client)
    assert (status, document, after) == (200, {"ok": True}, None)
    assert service.calls == [("POST", "/connectivity", ["203.0.113.9"], raw, "127.0.0.1", "127.0.0.1")]


def test_a_request_without_the_client_connection_is_not_served(helper):
    service = Recorder()
    _, path = helper(service)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        message = json.dumps({"op": "handle", "method": "POST", "path": "/connect", "headers": {}, "raw": "",
                              "source": "10.0.2.1", "local": "10.0.0.1"}).encode()
        sock.sendall(b"C" + struct.pack(">I", len(message)) + message)
        assert closed_without_answer(sock)
    assert service.calls == []


def test_deferred_work_waits_for_the_front_ends_answer(helper, tcp_client):
    service = Recorder(deferred=True)
    client, _ = helper(service)
    status, _, after = client.handle("POST", "/disconnect", {}, b"{}", "10.0.2.1", "10.0.0.1", connection=tcp_client)
    assert status == 200 and callable(after)
    assert not service.done.wait(0.3)  # the answer has not gone out yet
    after()
    assert service.done.wait(5)


def test_a_real_join_service_answers_through_the_helper(helper, node, tcp_client):
    client, _ = helper(JoinService(node))
    token = TokenStore(node.paths.tokens_file).default_token()
    body = json.dumps({"id": 2, "token": token, "protocol": joinapi.PROTOCOL}).encode()
    status, document, _ = client.handle("POST", "/connectivity", {}, body, "", "", connection=tcp_client)
    assert status == 200 and document["id"] == 0
    status, document, _ = client.handle("POST", "/connectivity", {}, b"{", "", "", connection=tcp_client)
    assert status == 400 and "JSON" in document["error"]


def test_a_helper_that_is_not_there_is_a_503_not_a_crash(tmp_path, tcp_client):
    client = joinhelper.HelperClient(str(tmp_path / "nobody.sock"))
    status, document, after = client.handle("POST", "/connect", {}, b"{}", "", "", connection=tcp_client)
    assert status == 503 and "helper" in document["error"] and after is None


def test_only_the_front_ends_user_and_root_are_served(helper, tcp_client):
    service = Recorder()
    client, path = helper(service, allowed_uids={0})
    os.chmod(path, 0o666)  # only the peer check stands in the way now
    # Another local user speaks the helper's protocol directly.
    script = (
        "import socket, struct, json, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "m = json.dumps({'op': 'handle', 'method': 'POST', 'path': '/connect', 'headers': {}, 'raw': '',"
        " 'source': '10.0.2.1', 'local': '10.0.0.1'}).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('>I', len(m)) + m)\n"
        "    print(repr(s.recv(100)))\n"
        "except OSError:\n"
        "    print(repr(b''))\n"
    )
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                             script, path], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "b''", result  # closed without an answer
    assert service.calls == []
    # Root is served.
    assert client.handle("POST", "/connect", {}, b"{}", "", "", connection=tcp_client)[0] == 200


def test_a_malformed_message_gets_no_service(helper):
    service = Recorder()
    _, path = helper(service)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(b"\xff\xff\xff\xff")  # 4 GiB announced
        assert closed_without_answer(sock)
    assert service.calls == []
