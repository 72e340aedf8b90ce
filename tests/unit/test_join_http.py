"""The join API attacked over HTTP: a real JoinServer on 127.0.0.1 and raw
sockets that send what no honest client would (issue 9, items 7-11)."""

import configparser
import json
import secrets
import select
import socket
import threading
import time

import pytest

from join_http_helpers import (
    LiveJoinServer,
    closed_by_server,
    exchange,
    one_line_error,
    quiet_host,
    read_answer,
    request_bytes,
)
from unit_helpers import REPO, init_node, make_link, random_key
from wgmesh_common import joinapi, linkfile, linkkeys
from wgmesh_common.joinserver import (
    FAILURES_ALLOWED,
    FAILURES_ALLOWED_IN_ALL,
    MAX_CONNECTIONS,
    MAX_HEAD,
    ConnectionSlots,
    FailureLimiter,
    JoinService,
    forwarded_client,
    limiter_key,
    parse_networks,
)
from wgmesh_common.tokens import TokenStore


@pytest.fixture(autouse=True)
def _quiet_host(monkeypatch):
    quiet_host(monkeypatch)


@pytest.fixture
def live(node):
    """start(service=None, **JoinServer options) -> a LiveJoinServer of node 0."""
    servers = []

    def start(service=None, **options):
        servers.append(LiveJoinServer(service or JoinService(node), **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def token(node) -> str:
    return TokenStore(node.paths.tokens_file).default_token()


def connectivity(token: str | None = None, headers: dict | None = None) -> bytes:
    body = json.dumps({"id": 2, "protocol": joinapi.PROTOCOL, **({"token": token} if token else {})}).encode()
    return request_bytes("POST", "/connectivity", body, headers)


def handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ------------------------------------------------- item 7: Content-Length

@pytest.mark.parametrize("length, status", [
    ("-1", 400),              # read(-1) read to the end of the connection
    ("+16", 400),
    ("0x10", 400),
    ("1e3", 400),
    ("16 16", 400),
    ("1\xb2", 400),           # a superscript two: a digit to str.isdigit(), not to HTTP
    ("99999999999999999999", 413),
    (str(joinapi.MAX_BODY + 1), 413),
])
def test_a_bad_content_length_is_refused_at_once_and_the_connection_closed(live, length, status):
    server = live()
    head = request_bytes("POST", "/connect", b"", length=length)
    # The body an attacker would go on sending; the server must not wait for it.
    answer, sock = exchange(server, head + b"{" * 1000)
    with sock:
        assert answer is not None and answer.status == status
        assert "Content-Length" in one_line_error(answer) or "larger than" in one_line_error(answer)
        assert answer.headers.get("connection") == "close"
        assert closed_by_server(sock)
    # The server is still there for everybody else.
    answer, sock = exchange(server, connectivity())
    sock.close()
    assert answer.status == 401


@pytest.mark.parametrize("headers", [
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: chunked\r\nContent-Length: 2",
    "Transfer-Encoding: gzip, chunked",
])
def test_any_transfer_encoding_is_411(live, headers):
    server = live()
    data = (f"POST /connect HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n" "4000\r\n" + "{" * 100).encode()
    answer, sock = exchange(server, data)
    with sock:
        assert answer.status == 411
        assert "Transfer-Encoding is not accepted" in one_line_error(answer)
        assert closed_by_server(sock)


def test_two_content_lengths_are_400(live):
    server = live()
    answer, sock = exchange(server, request_bytes("POST", "/connect", b"{}", {"Content-Length": "2"}))
    with sock:
        assert answer.status == 400 and "more than one Content-Length" in one_line_error(answer)


def test_a_body_cut_short_is_400(live):
    server = live()
    sock = server.connect()
    with sock:
        sock.sendall(request_bytes("POST", "/connectivity", b'{"id": 2}', length="100"))
        sock.shutdown(1)  # no more: the body ends 91 bytes early
        answer = read_answer(sock)
        assert answer.status == 400 and "ended before its Content-Length" in one_line_error(answer)


# ----------------------------------------------- item 8: deadline and cap

def test_a_trickled_request_is_cut_at_its_deadline(live):
    server = live(request_deadline=1.0)
    sock = server.connect()
    data = connectivity() + b"X" * 0  # a complete, honest request ...
    with sock:
        # ... sent a byte at a time, each byte well inside any per-recv
        # timeout: only a deadline for the whole request stops it.
        for position in range(len(data)):
            sock.sendall(data[position:position + 1])
            if select.select([sock], [], [], 0.2)[0]:
                break
        else:
            pytest.fail("the server waited for the whole trickled request")
        answer = read_answer(sock)
        assert answer.status == 408 and "not complete within 1 s" in one_line_error(answer)
        assert closed_by_server(sock)


def test_an_idle_connection_ends_at_the_deadline_without_an_answer(live):
    server = live(request_deadline=0.5)
    sock = server.connect()
    with sock:
        assert read_answer(sock) is None


def test_a_request_with_huge_headers_is_431(live):
    server = live()
    padding = {f"X-Pad-{i}": "a" * 1000 for i in range(MAX_HEAD // 1000 + 2)}
    answer, sock = exchange(server, request_bytes("POST", "/connectivity", b"{}", padding))
    with sock:
        assert answer.status == 431 and "larger than" in one_line_error(answer)


def test_connections_beyond_the_cap_are_turned_away_without_a_thread(live, node):
    cap = 4
    server = live(slots=ConnectionSlots(total=cap, per_source=cap), request_deadline=60.0)
    before = handler_threads()
    held = []
    try:
        # Half-sent requests: each holds a connection (and its thread) until the deadline.
        for _ in range(cap):
            sock = server.connect()
            sock.sendall(b"POST /connectivity HTTP/1.1\r\nContent-Le")
            held.append(sock)
        assert wait_for(lambda: handler_threads() - before == cap)
        for _ in range(3 * cap):
            answer, sock = exchange(server, connectivity())
            with sock:
                assert answer.status == 503 and "retry" in one_line_error(answer)
                assert closed_by_server(sock)
        assert handler_threads() - before == cap
    finally:
        for sock in held:
            sock.close()
    # The held connections gone, their slots serve again.
    def served() -> bool:
        answer, sock = exchange(server, connectivity())
        sock.close()
        return answer.status == 401

    assert wait_for(served)


def test_the_unit_bounds_tasks_and_memory_above_the_in_process_caps():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "units" / "wgmesh-join-server.service")
    service = unit["Service"]
    # Threads: one per connection up to the cap, plus what a join runs.
    assert int(service["TasksMax"]) >= 2 * MAX_CONNECTIONS
    assert service["MemoryMax"].endswith("M") and int(service["MemoryMax"][:-1]) >= 64
    mesh = configparser.ConfigParser(strict=False, interpolation=None)
    mesh.read(REPO / "units" / "wgmesh-mesh.service")
    assert mesh["Service"]["TimeoutStartSec"] not in ("", "infinity", "0")


# ------------------------------------------- item 9: crashes on bad input

def signed_request(path: str, fields: dict, key: bytes, method: str = "POST", raw: bytes | None = None) -> bytes:
    """A request signed with key, as a peer signs with its link's derived key."""
    raw = raw if raw is not None else json.dumps({"protocol": joinapi.PROTOCOL, **fields}).encode()
    return request_bytes(method, path, raw, {joinapi.SIGNATURE_HEADER: linkkeys.sign(key, method, path, raw)})


@pytest.mark.parametrize("name, body, reason", [
    ("a lone surrogate in the token", b'{"id": 2, "token": "\\ud800"}', "lone surrogate"),
    ("a 5000-digit integer", b'{"id": ' + b"9" * 5000 + b"}", "more than 20 digits"),
    ("5000 nested brackets", b'{"id": 2, "token": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nesting deeper"),
    ("NaN", b'{"id": NaN}', "NaN"),
    ("a float out of range", b'{"id": 1e400}', "out of range"),
], ids=["lone surrogate", "5000 digits", "5000 nested", "NaN", "1e400"])
def test_a_hostile_body_is_400_with_one_line(live, name, body, reason):
    server = live()
    answer, sock = exchange(server, request_bytes("POST", "/connectivity", body))
    sock.close()
    assert answer is not None, f"{name}: the connection was dropped without an answer"
    assert answer.status == 400 and reason in one_line_error(answer), name


def test_a_400_digit_timestamp_on_disconnect_is_400(live, node, link_psk):
    server = live()
    raw = b'{"id": 2, "family": 4, "protocol": 2, "timestamp": ' + b"9" * 400 + b"}"
    answer, sock = exchange(server, signed_request("/disconnect", {}, link_psk, raw=raw))
    sock.close()
    assert answer is not None and answer.status == 400
    assert linkfile.exists(node.paths, "wgm2")


def test_a_nan_timestamp_is_refused_and_never_becomes_the_replay_marker(live, node, link_psk):
    server = live()
    for raw in (b'{"id": 2, "family": 4, "protocol": 2, "timestamp": NaN}',
                b'{"id": 2, "family": 4, "protocol": 2, "timestamp": 1e999}'):
        answer, sock = exchange(server, signed_request("/update", {}, link_psk, method="PATCH", raw=raw))
        sock.close()
        assert answer.status == 400, answer
    assert not (node.paths.replay_dir / "wgm2").exists()
    # A NaN cannot pass the freshness check whichever way it arrives.
    with pytest.raises(joinapi.RequestError) as caught:
        joinapi.check_fresh(float("nan"), None)
    assert caught.value.status == 400
    # A marker left by an older version as NaN does not disable replay refusal for good.
    joinapi.check_fresh(time.time(), float("nan"))


def test_an_unexpected_error_in_a_handler_is_a_500_not_a_dropped_connection(live, node, link_psk):
    server = live()
    # A key that cannot be read as a file: the handler meets an OSError.
    key_file = node.paths.link_key("wgm2")
    key_file.unlink()
    key_file.mkdir()
    answer, sock = exchange(server, signed_request("/disconnect", {"id": 2, "family": 4, "timestamp": time.time()},
                                                   link_psk))
    sock.close()
    assert answer is not None and answer.status == 500
    assert "internal error" in one_line_error(answer)


def test_bad_input_from_outside_counts_for_the_limiter(live, token):
    server = live()
    for _ in range(FAILURES_ALLOWED):
        answer, sock = exchange(server, request_bytes("POST", "/connectivity", b'{"id": ' + b"9" * 5000 + b"}"))
        sock.close()
        assert answer.status == 400
    answer, sock = exchange(server, connectivity(token))
    sock.close()
    assert answer.status == 429 and "too many refused requests from 127.0.0.1" in one_line_error(answer)


def test_bad_input_from_inside_the_mesh_never_locks_a_peer_out(node):
    # Mesh traffic comes in over the link to node 8 (see quiet_host).
    linkfile.save(node.paths, make_link(name="wgm8", peer_id=8), random_key(), random_key())
    service = JoinService(node)
    # A peer on a newer version sends fields this node does not know, over its link.
    for _ in range(FAILURES_ALLOWED * 3):
        status, _, _ = service.handle("POST", "/connectivity", {}, b'{"id": 2, "protocol": 2, "newer": true}',
                                      "10.0.2.1", "10.0.0.1")
        assert status == 400
    status, _, _ = service.handle("POST", "/connectivity", {}, b'{"id": 2, "protocol": 2}', "10.0.2.1", "10.0.0.1")
    assert status == 200


# ------------------------------------------ item 10: no link table for free

def test_disconnect_answers_alike_for_no_link_and_a_wrong_key(live, node, link_psk):
    server = live()
    answers = []
    for peer_id in (4, 2):  # node 4: no link; node 2: a link, but not this key
        fields = {"id": peer_id, "family": 4, "timestamp": time.time()}
        answer, sock = exchange(server, signed_request("/disconnect", fields, secrets.token_bytes(32)))
        sock.close()
        answers.append((answer.status, one_line_error(answer).replace(f"node {peer_id} ", "node N ")))
    assert answers[0] == answers[1] == (404, "this node has no link to node N over IPv4 whose key signed this request")
    # Without a signature both are 401 alike, too.
    for peer_id in (4, 2):
        body = json.dumps({"id": peer_id, "family": 4, "protocol": 2, "timestamp": time.time()}).encode()
        answer, sock = exchange(server, request_bytes("POST", "/disconnect", body))
        sock.close()
        assert answer.status == 401
    assert linkfile.exists(node.paths, "wgm2")


# ------------------------------------- item 11: proxies, botnets, IPv6 hosts

@pytest.fixture
def proxied_node(paths):
    """Node 0 behind a reverse proxy on 127.0.0.1."""
    return init_node(paths, 0, '[api]\ntrusted_proxies = ["127.0.0.1", "::1"]\n')


def test_behind_a_trusted_proxy_bad_tokens_lock_out_only_their_client(live, proxied_node):
    server = live(JoinService(proxied_node))
    token = TokenStore(proxied_node.paths.tokens_file).default_token()
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(FAILURES_ALLOWED):
        answer, sock = exchange(server, connectivity("wrong", attacker))
        sock.close()
        assert answer.status == 403
    answer, sock = exchange(server, connectivity(token, attacker))
    sock.close()
    assert answer.status == 429 and "198.51.100.7" in one_line_error(answer)
    # The legitimate client of the same proxy is not locked out.
    answer, sock = exchange(server, connectivity(token, {"X-Forwarded-For": "203.0.113.9"}))
    sock.close()
    assert answer.status == 200


def test_a_forwarded_mesh_address_does_not_make_a_request_from_inside_the_mesh(live, proxied_node):
    server = live(JoinService(proxied_node))
    answer, sock = exchange(server, connectivity(None, {"X-Forwarded-For": "10.0.2.1"}))
    sock.close()
    assert answer.status == 401


def test_forwarded_for_from_an_untrusted_source_is_ignored(live, token):
    server = live()
    for i in range(FAILURES_ALLOWED):
        answer, sock = exchange(server, connectivity("wrong", {"X-Forwarded-For": f"198.51.100.{i}"}))
        sock.close()
        assert answer.status == 403
    answer, sock = exchange(server, connectivity(token, {"X-Forwarded-For": "203.0.113.9"}))
    sock.close()
    assert answer.status == 429 and "from 127.0.0.1" in one_line_error(answer)


def test_a_botnet_gains_nothing_from_many_addresses(live, proxied_node):
    server = live(JoinService(proxied_node))
    token = TokenStore(proxied_node.paths.tokens_file).default_token()
    for i in range(FAILURES_ALLOWED_IN_ALL):
        answer, sock = exchange(server, connectivity("wrong", {"X-Forwarded-For": f"198.51.{i // 200}.{i % 200 + 1}"}))
        sock.close()
        assert answer.status == 403
    # A fresh address's guess is refused before it is compared with any token ...
    answer, sock = exchange(server, connectivity(token[::-1], {"X-Forwarded-For": "203.0.113.99"}))
    sock.close()
    assert answer.status == 429 and "from all sources together" in one_line_error(answer)
    # ... while the botnet cannot lock out who holds a valid token.
    answer, sock = exchange(server, connectivity(token, {"X-Forwarded-For": "203.0.113.98"}))
    sock.close()
    assert answer.status == 200


@pytest.mark.parametrize("source, chain, client", [
    ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
    ("127.0.0.1", ["203.0.113.1, 198.51.100.7"], "198.51.100.7"),       # the client's own entry comes first
    ("127.0.0.1", ["198.51.100.7, 127.0.0.1"], "198.51.100.7"),         # two proxies deep
    ("127.0.0.1", ["198.51.100.7", "203.0.113.5"], "203.0.113.5"),      # repeated headers, in order
    ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
    ("127.0.0.1", [], "127.0.0.1"),
    ("198.51.100.9", ["203.0.113.5"], "198.51.100.9"),                  # not a proxy of ours
    ("127.0.0.1", ["::ffff:198.51.100.7"], "198.51.100.7"),
])
def test_forwarded_client(source, chain, client):
    assert forwarded_client(source, chain, parse_networks(["127.0.0.1", "::1"])) == client


def test_ipv6_sources_count_per_64():
    assert limiter_key("2001:db8:1:2:aaaa::1") == limiter_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert limiter_key("2001:db8:1:3::1") != limiter_key("2001:db8:1:2::1")
    limiter = FailureLimiter(allowed=5, window=60, allowed_in_all=10 ** 9)
    for i in range(5):
        limiter.fail(f"2001:db8:1:2::{i + 1:x}", now=0.0)
    with pytest.raises(joinapi.RequestError) as caught:
        limiter.check("2001:db8:1:2::ffff", now=1.0)  # a new address, the same host's /64
    assert caught.value.status == 429
    limiter.check("2001:db8:1:3::1", now=1.0)


def test_the_limiter_table_stays_bounded_under_many_live_sources():
    limiter = FailureLimiter(allowed=5, window=60, allowed_in_all=10 ** 9)
    limiter.MAX_SOURCES = 1000
    # Every failure inside the window: no stale source to sweep away.
    for i in range(5000):
        limiter.fail(f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1", now=float(i) / 1000)
    assert len(limiter._failures) <= 1000
    for i in range(5000):
        limiter.fail("198.51.100.7", now=10.0)
    assert len(limiter._failures["198.51.100.7"]) == 5


def test_trusted_proxies_are_set_validated_and_kept_in_the_config(tmp_path):
    from wgmesh_common import config
    from wgmesh_common.errors import ConfigError

    path = tmp_path / "wgmesh.toml"
    path.write_text("[node]\nid = 0\n\n[api]\n#trusted_proxies = []\n")
    value = config.coerce("api", "trusted_proxies", "127.0.0.1, ::1,10.1.0.0/24")
    assert config.write_settings(path, {("api", "trusted_proxies"): value}).api_trusted_proxies == \
        ("127.0.0.1", "::1", "10.1.0.0/24")
    assert 'trusted_proxies = ["127.0.0.1", "::1", "10.1.0.0/24"]' in path.read_text()
    with pytest.raises(ConfigError, match="api.trusted_proxies must list addresses or networks"):
        config.parse({"api": {"trusted_proxies": ["proxy.example"]}})
    with pytest.raises(ConfigError, match="api.trusted_proxies must be a list"):
        config.parse({"api": {"trusted_proxies": "127.0.0.1"}})


@pytest.mark.parametrize("claimed", ["é" * 64, "zz" * 32, "0" * 63, "0" * 65])
def test_a_signature_that_is_not_64_hex_digits_is_refused_not_a_crash(live, node, link_psk, claimed):
    server = live()
    raw = json.dumps({"id": 2, "family": 4, "protocol": 2, "timestamp": time.time()}).encode()
    answer, sock = exchange(server, request_bytes("POST", "/disconnect", raw,
                                                  {joinapi.SIGNATURE_HEADER: claimed}))
    sock.close()
    assert answer is not None and answer.status == 404, answer  # as any wrong key, counted by the limiter
    assert linkfile.exists(node.paths, "wgm2")


def test_one_source_cannot_hold_every_slot(live, node):
    server = live(slots=ConnectionSlots(total=6, per_source=2), request_deadline=60.0)
    held = []
    try:
        for _ in range(2):  # one source's share, held with half-sent requests
            sock = server.connect()
            sock.sendall(b"POST /connectivity HTTP/1.1\r\nContent-Le")
            held.append(sock)
        time.sleep(0.3)
        answer, sock = exchange(server, connectivity())
        with sock:
            assert answer.status == 503
        # Another source is still served.
        other = socket.create_connection(("127.0.0.1", server.port), timeout=20, source_address=("127.0.0.2", 0))
        with other:
            other.sendall(connectivity())
            assert read_answer(other).status == 401
    finally:
        for sock in held:
            sock.close()


def test_a_valid_token_passes_the_cap_on_all_sources(node, token):
    service = JoinService(node)
    service.limiter = FailureLimiter(allowed=5, allowed_in_all=3)
    for source in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert service.handle("POST", "/connectivity", {}, connectivity_body("wrong"), source, "192.0.2.1")[0] == 403
    # Every source is now locked out by the cap on all of them ...
    assert service.handle("POST", "/connectivity", {}, connectivity_body("wrong"), "198.51.100.4", "192.0.2.1")[0] == 429
    # ... except a request with a valid token.
    assert service.handle("POST", "/connectivity", {}, connectivity_body(token), "198.51.100.5", "192.0.2.1")[0] == 200


def connectivity_body(token: str) -> bytes:
    return json.dumps({"id": 2, "token": token, "protocol": joinapi.PROTOCOL}).encode()
