"""The `wgmesh` command line: init, token, set, connect, and the one-line
error contract of commands.run()."""

import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from unit_helpers import REPO, VENV_BIN, file_mode, random_key
from wgmesh_common import config as node_config
from wgmesh_common.commands import wgmesh as wgmesh_commands
from wgmesh_common.commands.wgmesh import main
from wgmesh_common.errors import NotInitialisedError, WgmeshError
from wgmesh_common.paths import Paths
from wgmesh_common.tokens import TokenStore


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def wgmesh(root, monkeypatch):
    """Invoke `wgmesh ARGS...` in-process with WGMESH_ROOT=root."""
    # urllib honours proxy variables; the fake join-server is on 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner(mix_stderr=False)

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(main, list(args), env={"WGMESH_ROOT": str(root), **(env or {})})

    return invoke


def tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def initialise(wgmesh, node_id: int = 0) -> None:
    # A configured public address: the node's own underlay families do not
    # depend on this machine's routes.
    result = wgmesh("init", "--no-start", "--public-ipv4", "203.0.113.1", str(node_id))
    assert result.exit_code == 0, result.output + result.stderr


# --------------------------------------------------------------------- init

@pytest.mark.parametrize("args, code, message", [
    (["3"], 1, "cannot use ID 3: 3 is not a multiple of 2"),
    (["300"], 1, "cannot use ID 300: 300 is out of range (0-254)"),
    (["250"], 1, "cannot use ID 250: 250 would overlap the VXLAN subnet"),
    (["--", "-1"], 1, "cannot use ID -1: -1 is out of range (0-254)"),
    (["-1"], 2, "No such option: -1"),
    (["x"], 2, "'x' is not a valid integer"),
    ([], 2, "Missing argument 'ID'"),
])
def test_init_with_a_bad_id_fails_and_writes_nothing(wgmesh, root, args, code, message):
    result = wgmesh("init", "--no-start", *args)
    assert result.exit_code == code
    text = str(result.exception) if isinstance(result.exception, WgmeshError) else result.stderr
    assert message in text
    assert list(root.iterdir()) == []


def test_init_refuses_an_id_the_layout_leaves_without_an_overlay_address(wgmesh, root):
    # /24 node blocks and the VXLAN /24 above every ID: 255 IDs for 254 host addresses.
    path = Paths(root).config_file
    path.parent.mkdir(parents=True)
    path.write_text('[mesh]\nnode_prefix = 24\nvxlan_subnet = "10.0.255.0/24"\n')
    before = tree(root)
    result = wgmesh("init", "--no-start", "0")
    assert result.exit_code == 1
    assert str(result.exception) == ("cannot use ID 0: node 0's VXLAN IPv4 address 10.0.255.0 is the network address "
                                     "of 10.0.255.0/24: IDs 1-254 hold every host address there (give node 0 another "
                                     "ID, or move mesh.vxlan_subnet into a node block no ID uses)")
    assert tree(root) == before
    assert wgmesh("init", "--no-start", "1").exit_code == 0


def test_a_node_0_installed_in_that_layout_keeps_loading(root):
    # What an upgrade finds on a node 0 made before the overlay rule: it must load, or nothing on it runs.
    path = Paths(root).config_file
    path.parent.mkdir(parents=True)
    path.write_text('[node]\nid = 0\n\n[mesh]\nnode_prefix = 24\nvxlan_subnet = "10.0.255.0/24"\n')
    config = node_config.load(path)
    assert config.node_id == 0 and config.initialised


def test_init_no_start_writes_the_config_and_a_secret_token(wgmesh, root):
    result = wgmesh("init", "--no-start", "4")
    assert result.exit_code == 0, result.stderr
    assert "node 4 initialised: mesh address 10.0.4.1 and fd10:0:0:4::1" in result.output
    paths = Paths(root)
    config = node_config.load(paths.config_file)
    assert config.node_id == 4 and config.api_public is False
    assert file_mode(paths.tokens_file) == 0o600
    [token] = TokenStore(paths.tokens_file).load()
    assert token.default
    # Nothing was started, so nothing of the running state exists.
    assert not paths.run_dir.exists()


def test_init_public_with_addresses(wgmesh, root):
    result = wgmesh("init", "--no-start", "--public", "--public-ipv4", "203.0.113.1", "2")
    assert result.exit_code == 0, result.stderr
    config = node_config.load(Paths(root).config_file)
    assert config.api_public is True and config.public_ipv4 == "203.0.113.1"
    assert "join API on all addresses" in result.output


def test_init_with_a_bad_public_address_writes_nothing(wgmesh, root):
    result = wgmesh("init", "--no-start", "--public-ipv4", "300.1.1.1", "2")
    assert result.exit_code != 0
    assert "node.public_ipv4" in str(result.exception)
    assert list(root.iterdir()) == []


def test_init_keeps_the_comments_of_an_existing_config(wgmesh, root):
    paths = Paths(root)
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text("[node]\n# Set by wgmesh init.\n#id = 0\n\n[api]\n#port = 8080\n")
    assert wgmesh("init", "--no-start", "6").exit_code == 0
    assert paths.config_file.read_text() == "[node]\n# Set by wgmesh init.\n#id = 0\nid = 6\n\n[api]\n#port = 8080\npublic = false\n"


def test_a_second_init_refuses_and_changes_nothing(wgmesh, root):
    initialise(wgmesh, 0)
    before = tree(root)
    result = wgmesh("init", "--no-start", "2")
    assert result.exit_code == 1
    assert "already initialised as node 0" in str(result.exception)
    assert tree(root) == before


def test_init_that_fails_to_start_puts_everything_back(wgmesh, root, tmp_path):
    """The service manager refuses (a systemctl that fails, at the process
    boundary): the config returns to its old bytes and the token goes."""
    paths = Paths(root)
    paths.config_dir.mkdir(parents=True)
    original = "# mine\n[system]\nservice_manager = \"systemd\"\n"
    paths.config_file.write_text(original)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    systemctl.chmod(0o755)
    result = wgmesh("init", "0", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.exit_code == 1
    assert "systemctl daemon-reload failed: System has not been booted with systemd" in str(result.exception)
    assert paths.config_file.read_text() == original
    assert not paths.tokens_file.exists()


# -------------------------------------------------------------------- token

def test_token_prints_the_default_token(wgmesh, root):
    initialise(wgmesh)
    first = wgmesh("token")
    assert first.exit_code == 0
    assert first.output.strip() == TokenStore(Paths(root).tokens_file).default_token()
    assert wgmesh("token").output == first.output


def test_token_new_list_revoke(wgmesh, root):
    initialise(wgmesh)
    store = TokenStore(Paths(root).tokens_file)
    default = store.default_token()

    result = wgmesh("token", "--new", "--expires", "1h", "--uses", "2")
    assert result.exit_code == 0, result.stderr
    value = result.output.strip()
    [extra] = [t for t in store.load() if t.value == value]
    assert extra.uses_left == 2
    assert extra.expires == pytest.approx(time.time() + 3600, abs=30)
    assert store.check(value)

    listing = wgmesh("token", "--list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{default}  default  expires never  uses left unlimited")
    assert lines[1].startswith(f"{value}  extra  expires in ")
    assert lines[1].endswith("uses left 2")

    revoked = wgmesh("token", "--revoke", value)
    assert revoked.exit_code == 0 and "token revoked" in revoked.output
    assert not store.check(value)
    assert [t.value for t in store.load()] == [default]
    again = wgmesh("token", "--revoke", value)
    assert again.exit_code == 1 and "no such token" in str(again.exception)


@pytest.mark.parametrize("args, message", [
    (["--expires", "1h"], "--expires and --uses go with --new"),
    (["--uses", "1"], "--expires and --uses go with --new"),
    (["--new", "--list"], "use only one of --new, --revoke and --list"),
    (["--new", "--expires", "soon"], "bad duration 'soon'"),
    (["--new", "--expires", "0m"], "bad duration '0m'"),
    (["--new", "--uses", "0"], "at least one use"),
])
def test_token_refuses_bad_combinations(wgmesh, root, args, message):
    initialise(wgmesh)
    before = tree(root)
    result = wgmesh("token", *args)
    assert result.exit_code != 0
    assert message in (result.stderr + str(result.exception))
    assert tree(root) == before


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800)])
def test_parse_duration(text, seconds):
    from wgmesh_common.commands.wgmesh.token import parse_duration

    assert parse_duration(text) == seconds


def test_token_on_an_uninitialised_node(wgmesh, root):
    result = wgmesh("token")
    assert result.exit_code != 0
    assert isinstance(result.exception, NotInitialisedError)
    assert list(root.iterdir()) == []


# ---------------------------------------------------------------------- set

def test_set_changes_one_key_and_keeps_the_rest(wgmesh, root):
    initialise(wgmesh)
    result = wgmesh("set", "ospf.hello", "2")
    assert result.exit_code == 0 and result.output == "ospf.hello = 2\n"
    config = node_config.load(Paths(root).config_file)
    assert config.ospf_hello == 2 and config.node_id == 0


@pytest.mark.parametrize("args, message", [
    (["api.port", "70000"], "api.port must be between 1 and 65535"),
    (["ospf.hello", "4"], "ospf.dead (4) must be longer than ospf.hello (4)"),
    (["node.id", "2"], "the node ID is set once"),
    (["api.nope", "1"], "unknown setting api.nope"),
    (["port", "1"], "is not SECTION.KEY"),
    (["api.public", "perhaps"], "must be true or false"),
])
def test_set_refuses_and_leaves_the_file(wgmesh, root, args, message):
    initialise(wgmesh)
    before = tree(root)
    result = wgmesh("set", *args)
    assert result.exit_code != 0
    assert message in str(result.exception)
    assert tree(root) == before


# ------------------------------------------------------------------ connect

def no_join_leftovers(root) -> bool:
    paths = Paths(root)
    reservations = list(paths.reservations_dir.glob("*")) if paths.reservations_dir.exists() else []
    links = list(paths.links_dir.glob("*")) if paths.links_dir.exists() else []
    return reservations == [] and links == []


def test_connect_on_an_uninitialised_node(wgmesh, root):
    result = wgmesh("connect", "http://192.0.2.1:8080", "tok")
    assert result.exit_code != 0
    assert isinstance(result.exception, NotInitialisedError)
    assert "not initialised: run 'wgmesh init ID' first" in str(result.exception)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("url, message", [
    ("ftp://192.0.2.1", "it must start with http:// or https://"),
    ("192.0.2.1:8080", "it must start with http:// or https://"),
    ("http://", "no host"),
    ("http://192.0.2.1:8080/join", "give only scheme, host and port"),
    ("http://192.0.2.1:99999", "bad URL"),
])
def test_connect_to_a_bad_url(wgmesh, root, url, message):
    initialise(wgmesh)
    result = wgmesh("connect", url, "tok")
    assert result.exit_code == 1
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert no_join_leftovers(root)


class FakeJoinServer:
    """A remote join-server over real HTTP on 127.0.0.1 (the machine
    boundary): canned answers per path, every request recorded."""

    def __init__(self, answers: dict[str, tuple[int, dict]]):
        self.answers = answers
        self.requests: list[tuple[str, dict, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.path, json.loads(raw or b"{}"), dict(self.headers)))
                status, document = fake.answers.get(self.path, (404, {"error": "no such endpoint"}))
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def paths_asked(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


MESH = {"subnet": "10.0.0.0/16", "node_prefix": 23, "subnet6": "fd10::/48", "vxlan_subnet": "10.0.251.0/24"}
CONNECTIVITY = (200, {"id": 2, "ipv4": "127.0.0.1", "ipv6": None, "client": False, "mesh": MESH})


@pytest.fixture
def join_server():
    made = []

    def make(answers):
        made.append(FakeJoinServer(answers))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_connect_over_a_family_the_other_node_lacks(wgmesh, root, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": CONNECTIVITY})
    result = wgmesh("connect", "--transport", "6", remote.url, "tok")
    assert result.exit_code == 1
    assert "the other node has no IPv6 underlay address" in str(result.exception)
    assert remote.paths_asked() == ["/connectivity"]
    assert no_join_leftovers(root)


def test_connect_to_a_client_is_refused(wgmesh, root, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": (200, dict(CONNECTIVITY[1], id=200, client=True))})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1
    assert "node 200 is a client" in str(result.exception)
    assert remote.paths_asked() == ["/connectivity"]
    assert no_join_leftovers(root)


def test_connect_with_a_refused_token_leaves_nothing(wgmesh, root, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": (403, {"error": "the token is not valid"})})
    result = wgmesh("connect", remote.url, "wrong")
    assert result.exit_code == 1
    assert str(result.exception) == f"{remote.url} refused /connectivity (403): the token is not valid"
    assert remote.paths_asked() == ["/connectivity"]
    assert remote.requests[0][1] == {"id": 0, "token": "wrong", "protocol": 2}
    assert no_join_leftovers(root)


def test_connect_to_a_mesh_with_other_settings_is_refused(wgmesh, root, join_server):
    initialise(wgmesh)
    other = dict(MESH, subnet="10.9.0.0/16")
    remote = join_server({"/connectivity": (200, dict(CONNECTIVITY[1], mesh=other))})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1
    assert "mesh settings differ: subnet is '10.9.0.0/16' on node 2" in str(result.exception)
    assert remote.paths_asked() == ["/connectivity"]
    assert no_join_leftovers(root)


def test_connect_to_itself_is_refused(wgmesh, root, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": (200, dict(CONNECTIVITY[1], id=0))})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1 and "this node itself" in str(result.exception)
    assert no_join_leftovers(root)


def test_connect_refused_at_connect_releases_the_reservation(wgmesh, root, join_server):
    initialise(wgmesh)
    remote = join_server({"/connectivity": CONNECTIVITY,
                          "/connect": (409, {"error": "a link to node 0 over IPv4 already exists"})})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1
    assert "refused /connect (409): a link to node 0 over IPv4 already exists" in str(result.exception)
    # The request carried only a public key, never a private one.
    body = remote.requests[1][1]
    assert set(body) == {"id", "public_key", "listen_port", "family", "type", "token", "protocol"}
    assert body["listen_port"] == 51820 and body["family"] == 4
    assert no_join_leftovers(root)


def _reserve_in_a_process(root, peer: int, ready, stop) -> None:
    from wgmesh_common.node import Node

    Node.load(Paths(root)).allocator.reserve(peer, "dialer", 4)
    ready.set()
    stop.wait(60)


@pytest.fixture
def other_join(wgmesh, root):
    """On an initialised node, another process that is making the link to
    node 2 over IPv4: it holds wgm2's reservation until told to stop, or killed."""
    import multiprocessing

    initialise(wgmesh)
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()
    process = context.Process(target=_reserve_in_a_process, args=(root, 2, ready, stop))
    process.start()
    process.stop = stop
    try:
        assert ready.wait(30)
        yield process
    finally:
        # Not after a kill: setting an event a dead process waited on hangs.
        if process.is_alive():
            stop.set()
        process.join(30)


def test_connect_waits_for_another_join_of_the_same_link_and_goes_on_once_it_ends(wgmesh, root, join_server,
                                                                                     other_join):
    import threading

    remote = join_server({"/connectivity": CONNECTIVITY,
                          "/connect": (409, {"error": "a link to node 0 over IPv4 already exists"})})
    threading.Timer(0.5, other_join.stop.set).start()
    result = wgmesh("connect", remote.url, "tok")
    # Not turned away by the other join: on to /connect once it ended.
    assert remote.paths_asked() == ["/connectivity", "/connect"]
    assert "refused /connect (409)" in str(result.exception)


def test_connect_gives_up_on_another_join_that_does_not_end(wgmesh, root, join_server, other_join, monkeypatch):
    from wgmesh_common import join

    monkeypatch.setattr(join, "BUSY_WAIT", 0.3)
    remote = join_server({"/connectivity": CONNECTIVITY})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1
    assert "another join has been making wgm2 for over 0 s" in str(result.exception)
    assert remote.paths_asked() == ["/connectivity"]
    # The other join's reservation is its own: left alone.
    assert (Paths(root).reservations_dir / "wgm2.toml").exists()


def test_connect_after_a_killed_join_takes_its_reservation_at_once(wgmesh, root, join_server, other_join):
    import signal

    os.kill(other_join.pid, signal.SIGKILL)
    other_join.join(30)
    remote = join_server({"/connectivity": CONNECTIVITY,
                          "/connect": (409, {"error": "a link to node 0 over IPv4 already exists"})})
    result = wgmesh("connect", remote.url, "tok")
    # Past the dead join's reservation to the other node: its answer is the error.
    assert remote.paths_asked() == ["/connectivity", "/connect"]
    assert "refused /connect (409)" in str(result.exception)
    assert no_join_leftovers(root)


def test_an_unusable_connect_answer_is_undone_on_both_sides(wgmesh, root, join_server):
    from wgmesh_common import keys, linkkeys

    initialise(wgmesh)
    server_private = random_key()
    answer = {"id": 2, "public_key": keys.public_key(server_private), "listen_port": 70000, "offset": 4}
    remote = join_server({"/connectivity": CONNECTIVITY, "/connect": (200, answer),
                          "/disconnect": (200, {"name": "wgm0", "removed": True})})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1
    assert "sent an unusable /connect answer" in str(result.exception)
    assert no_join_leftovers(root)
    # The other side was asked, with a request signed by the link's derived key, to drop its half.
    assert remote.paths_asked() == ["/connectivity", "/connect", "/disconnect"]
    _, body, headers = remote.requests[2]
    assert body["id"] == 0 and body["family"] == 4
    raw = json.dumps(body, sort_keys=True).encode()
    key = linkkeys.signing_key(server_private, remote.requests[1][1]["public_key"])
    assert headers["X-Wgmesh-Signature"] == linkkeys.sign(key, "POST", "/disconnect", raw)


def test_a_connect_answer_without_a_usable_key_cannot_be_undone_by_signature(wgmesh, root, join_server):
    initialise(wgmesh)
    answer = {"id": 2, "public_key": "not-a-key", "listen_port": 51820, "offset": 4}
    remote = join_server({"/connectivity": CONNECTIVITY, "/connect": (200, answer)})
    result = wgmesh("connect", remote.url, "tok")
    assert result.exit_code == 1 and "sent an unusable /connect answer" in str(result.exception)
    assert no_join_leftovers(root)
    # Nothing could sign it: the other side keeps a half that never saw a handshake, which it replaces freely.
    assert remote.paths_asked() == ["/connectivity", "/connect"]


def test_connect_with_a_taken_port_leaves_nothing(wgmesh, root, join_server):
    initialise(wgmesh)
    from unit_helpers import make_link
    from wgmesh_common import linkfile

    linkfile.save(Paths(root), make_link(name="wgm4", peer_id=4, listen_port=51999), random_key(), random_key())
    remote = join_server({"/connectivity": CONNECTIVITY})
    result = wgmesh("connect", "--port", "51999", remote.url, "tok")
    assert result.exit_code == 1 and "port 51999 is already used" in str(result.exception)
    paths = Paths(root)
    assert not list(paths.reservations_dir.glob("*"))
    assert sorted(p.name for p in paths.links_dir.iterdir()) == ["wgm4.key", "wgm4.psk", "wgm4.toml"]


def test_connect_with_an_unknown_link_type(wgmesh, root):
    initialise(wgmesh)
    result = wgmesh("connect", "--type", "gre", "http://192.0.2.1:8080", "tok")
    assert result.exit_code == 1 and "unknown link type 'gre'" in str(result.exception)
    assert no_join_leftovers(root)


# ------------------------------------------- the one-line error contract

def run_wgmesh(root, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env["WGMESH_ROOT"] = str(root)
    return subprocess.run([str(VENV_BIN / "wgmesh"), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, code, expected", [
    (["init", "--no-start", "3"], 1, "wgmesh: error: cannot use ID 3: 3 is not a multiple of 2"),
    (["init", "--no-start", "x"], 2, "wgmesh init: error: Invalid value for 'ID': 'x' is not a valid integer"),
    (["connect", "ftp://192.0.2.1", "tok"], 3, "wgmesh: error: this node is not initialised"),
    (["token", "--bogus"], 2, "wgmesh token: error: No such option: --bogus"),
])
def test_errors_are_exactly_one_line_on_stderr(root, args, code, expected):
    result = run_wgmesh(root, *args)
    assert result.returncode == code
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert result.stderr.startswith(expected)
    assert list(root.iterdir()) == []


def test_errors_of_an_initialised_node_are_one_line(root):
    assert run_wgmesh(root, "init", "--no-start", "0").returncode == 0
    config_before = (root / "etc/wgmesh/wgmesh.toml").read_bytes()
    for args, expected in [
        (["connect", "http://192.0.2.1:8080/x", "tok"], "wgmesh: error: bad URL"),
        (["set", "api.port", "70000"], "api.port must be between 1 and 65535"),
        (["init", "--no-start", "2"], "already initialised as node 0"),
    ]:
        result = run_wgmesh(root, *args)
        assert result.returncode != 0
        assert result.stderr.count("\n") == 1, result.stderr
        assert expected in result.stderr
    assert (root / "etc/wgmesh/wgmesh.toml").read_bytes() == config_before


def test_a_broken_config_file_is_a_one_line_error(root):
    paths = Paths(root)
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text('[node]\nid = "zero"\n')
    result = run_wgmesh(root, "token")
    assert result.returncode == 2
    assert result.stderr == f"wgmesh: error: {paths.config_file}: node.id must be an integer, not 'zero'\n"


def shipped_config(root) -> Path:
    path = Paths(root).config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((REPO / "etc/wgmesh/wgmesh.toml").read_text())
    return path


def is_subsequence(short: list[str], long: list[str]) -> bool:
    rest = iter(long)
    return all(line in rest for line in short)


def test_set_keeps_every_comment_and_the_key_order_of_the_shipped_file(wgmesh, root):
    path = shipped_config(root)
    shipped = path.read_text().splitlines()
    assert wgmesh("set", "ospf.hello", "2").exit_code == 0
    first = path.read_text().splitlines()
    # One line more, every line of the shipped file still there in its order.
    assert len(first) == len(shipped) + 1 and is_subsequence(shipped, first)
    assert [line for line in first if line not in shipped] == ["hello = 2"]
    assert first.index("hello = 2") < first.index("[system]"), "in its own section"
    assert wgmesh("set", "ospf.base_cost", "50").exit_code == 0
    assert wgmesh("set", "ospf.hello", "3").exit_code == 0
    third = path.read_text().splitlines()
    # An existing key changes in place: the order of the keys stays.
    assert [line for line in third if line not in shipped] == ["hello = 3", "base_cost = 50"]
    assert list(tomllib.loads(path.read_text())["ospf"]) == ["hello", "base_cost"]


def test_set_of_an_invalid_value_leaves_the_file_byte_for_byte(wgmesh, root):
    path = shipped_config(root)
    assert wgmesh("set", "ospf.hello", "2").exit_code == 0
    before = path.read_bytes()
    for args in (["ospf.hello", "0"], ["ospf.hello", "2", "api.port", "70000"], ["mesh.subnet", "10.9.0.0/16"],
                 ["ospf.hello", "2", "api.port"]):
        result = wgmesh("set", *args)
        assert result.exit_code != 0, args
        assert path.read_bytes() == before, args


def test_set_moves_settings_that_depend_on_each_other_together(wgmesh, root):
    path = shipped_config(root)
    result = wgmesh("set", "mesh.subnet", "10.9.0.0/16", "mesh.vxlan_subnet", "10.9.251.0/24")
    assert result.exit_code == 0, result.output
    assert result.output == 'mesh.subnet = "10.9.0.0/16"\nmesh.vxlan_subnet = "10.9.251.0/24"\n'
    loaded = node_config.load(path)
    assert str(loaded.subnet) == "10.9.0.0/16" and str(loaded.vxlan_subnet) == "10.9.251.0/24"


def test_every_subcommand_module_is_listed_and_loads_only_when_run():
    """`wgmesh` imports a subcommand's module on demand: each module of the
    package is listed (a new one cannot be left out of --help), and a run
    of one subcommand in a fresh interpreter imports no other."""
    package = Path(wgmesh_commands.__file__).parent
    modules = {path.stem for path in package.glob("*.py")} - {"__init__"}
    assert set(wgmesh_commands.SUBCOMMANDS) == modules
    assert all(main.get_command(None, name).name == name for name in modules)
    script = ("import sys; from wgmesh_common.commands.wgmesh import main; "
              "main.get_command(None, 'status'); "
              "print(sorted(m for m in sys.modules if m.startswith('wgmesh_common.commands.wgmesh.')))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['wgmesh_common.commands.wgmesh.status']"
