"""The join client against hostile or hung servers on 127.0.0.1, and the
token kept off the command line (issue 9, items 12 and 14)."""

import socket
import threading
import time
import tracemalloc

import pytest
from click.testing import CliRunner

from test_commands import CONNECTIVITY, MESH, initialise, join_server, no_join_leftovers, root, wgmesh  # noqa: F401 (fixtures)
from unit_helpers import random_key
from wgmesh_common import joinclient
from wgmesh_common.commands.wgmesh import main
from wgmesh_common.errors import RemoteError, WgmeshError


class HostileServer:
    """A TCP server on 127.0.0.1 that reads a request and then does what
    behave(connection) says; finished tells whether it got all of it out."""

    def __init__(self, behave):
        self.behave = behave
        self.finished: bool | None = None
        self.done = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self.sock.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(30)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                self.behave(connection)
                self.finished = True
            except OSError:
                self.finished = False
        self.done.set()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hostile():
    made = []

    def make(behave):
        made.append(HostileServer(behave))
        return made[-1]

    yield make
    for server in made:
        server.close()


def answer_head(length: int | None) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
    return (head + "\r\n").encode()


HUGE = 32 * 1024 * 1024
CHUNK = b"a" * (1024 * 1024)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_huge_answer_is_refused_without_being_read(hostile, declared):
    def huge_answer(connection):
        connection.sendall(answer_head(HUGE + 13 if declared else None) + b'{"id": 2, "x":"')
        for _ in range(HUGE // len(CHUNK)):
            connection.sendall(CHUNK)
        connection.sendall(b'"}')

    server = hostile(huge_answer)
    tracemalloc.start()
    try:
        with pytest.raises(RemoteError, match="larger than 65536 bytes"):
            joinclient.request(server.url, "POST", "/connectivity", {"id": 0})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert server.done.wait(30)
    assert server.finished is False  # the client hung up long before the end
    assert peak < 4 * 1024 * 1024, f"the client held {peak} bytes"


def test_a_trickling_server_is_given_up_at_the_deadline(hostile):
    answer = answer_head(9) + b'{"id": 2}'

    def trickle(connection):
        # A byte every 0.1 s: each well inside any per-recv timeout.
        for position in range(len(answer)):
            connection.sendall(answer[position:position + 1])
            time.sleep(0.1)

    server = hostile(trickle)
    with pytest.raises(RemoteError, match="did not answer /connectivity within 1 s"):
        joinclient.request(server.url, "POST", "/connectivity", {"id": 0}, timeout=1.0)
    assert server.done.wait(30)
    assert server.finished is False


@pytest.mark.parametrize("body, reason", [
    (b'{"id": 2, "offset": 1e400}', "out of range"),
    (b'{"id": 2, "offset": NaN}', "NaN"),
    (b'{"id": 2, "offset": -Infinity}', "Infinity"),
    (b'{"id": ' + b"9" * 5000 + b"}", "more than 20 digits"),
    (b'{"id": 2, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nesting deeper"),
    (b'{"id": 2, "public_key": "\\udc80"}', "lone surrogate"),
    (b'{"id": 2, "x": "\xff"}', "not JSON"),
    (b"[1, 2]", "unexpected document"),
], ids=["1e400", "NaN", "-Infinity", "5000 digits", "5000 nested", "lone surrogate", "not UTF-8", "a list"])
def test_every_bad_answer_is_a_remote_error(hostile, body, reason):
    server = hostile(lambda connection: connection.sendall(answer_head(len(body)) + body))
    with pytest.raises(RemoteError, match=reason):
        joinclient.request(server.url, "POST", "/connectivity", {"id": 0})


def test_a_refusal_reason_is_one_printable_line(hostile):
    body = ('{"error": "bad\\ntoken\\u001b[2J' + "x" * 1000 + '"}').encode()
    head = f"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    server = hostile(lambda connection: connection.sendall(head.encode() + body))
    with pytest.raises(RemoteError) as caught:
        joinclient.request(server.url, "POST", "/connectivity", {"id": 0})
    message = str(caught.value)
    assert caught.value.status == 403 and message.startswith(f"{server.url} refused /connectivity (403): bad token")
    assert message.isprintable() and len(message) < 400


def test_a_server_that_never_answers_is_a_remote_error(hostile):
    server = hostile(lambda connection: time.sleep(3))
    with pytest.raises(RemoteError, match="did not answer"):
        joinclient.request(server.url, "POST", "/connectivity", {"id": 0}, timeout=0.5)


@pytest.mark.parametrize("offset", [float("inf"), "4", 4.5, True, -2, [4]])
def test_a_connect_answer_with_a_bad_offset_is_refused_and_undone(wgmesh, root, join_server, offset):
    initialise(wgmesh)
    answer = {"id": 2, "public_key": random_key(), "preshared_key": random_key(), "listen_port": 51820,
              "offset": offset}
    remote = join_server({"/connectivity": CONNECTIVITY, "/connect": (200, answer),
                          "/disconnect": (200, {"name": "wgm0", "removed": True})})
    result = wgmesh("connect", remote.url, "tok")
    # A one-line error like any other bad answer (a mesh pass catches
    # those per peer), never an OverflowError or a link made from a guess.
    assert type(result.exception) in (WgmeshError, RemoteError), repr(result.exception)
    assert "unusable /connect answer (offset" in str(result.exception) or "not a number" in str(result.exception)
    assert no_join_leftovers(root)


@pytest.mark.parametrize("mesh", [[1], "10.0.0.0/16", None])
def test_a_connectivity_answer_with_a_bad_mesh_is_a_one_line_error(wgmesh, root, join_server, mesh):
    initialise(wgmesh)
    remote = join_server({"/connectivity": (200, dict(CONNECTIVITY[1], mesh=mesh))})
    result = wgmesh("connect", remote.url, "tok")
    assert isinstance(result.exception, WgmeshError) and "mesh settings differ" in str(result.exception)
    assert no_join_leftovers(root)


# ------------------------------------------- item 14: the token off argv

@pytest.fixture
def wgmesh_with_input(root):
    runner = CliRunner(mix_stderr=False)

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, env={"WGMESH_ROOT": str(root)})

    return invoke


REFUSED = (403, {"error": "the token is not valid"})


def test_the_token_from_standard_input(wgmesh, wgmesh_with_input, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": REFUSED})
    result = wgmesh_with_input("connect", remote.url, "-", input="SECRETTOKEN123\n")
    assert result.exit_code == 1 and "the token is not valid" in str(result.exception)
    assert remote.requests[0][1] == {"id": 0, "token": "SECRETTOKEN123", "protocol": 2}


def test_the_token_from_a_file(wgmesh, root, join_server, tmp_path):
    initialise(wgmesh)
    remote = join_server({"/connectivity": REFUSED})
    token_file = tmp_path / "token"
    token_file.write_text("FILETOKEN456\n")
    token_file.chmod(0o600)
    result = wgmesh("connect", "--token-file", str(token_file), remote.url)
    assert result.exit_code == 1 and "the token is not valid" in str(result.exception)
    assert remote.requests[0][1] == {"id": 0, "token": "FILETOKEN456", "protocol": 2}


@pytest.mark.parametrize("args, content, message", [
    (["--token-file", "{file}", "TOKEN"], "A\n", "either as TOKEN or with --token-file, not both"),
    (["--token-file", "{file}"], "A B\n", "must hold exactly one token (found 2 words)"),
    (["--token-file", "{file}"], "", "must hold exactly one token (found 0 words)"),
    (["--token-file", "{missing}"], None, "cannot read the token from"),
])
def test_a_bad_token_source_is_a_one_line_error(wgmesh, join_server, tmp_path, args, content, message):
    initialise(wgmesh)
    remote = join_server({"/connectivity": REFUSED})
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    args = [a.format(file=token_file, missing=tmp_path / "nope") for a in args]
    result = wgmesh("connect", *args[:-1], remote.url, args[-1]) if args[-1] == "TOKEN" else \
        wgmesh("connect", *args, remote.url)
    assert result.exit_code == 1 and message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert remote.requests == []


def test_connect_help_says_how_to_keep_the_token_off_the_command_line(wgmesh):
    result = wgmesh("connect", "--help")
    assert result.exit_code == 0
    assert "--token-file" in result.output and "standard input" in result.output and "/proc" in result.output
