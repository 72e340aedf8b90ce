"""Fuzzing the join API over HTTP (issue 9, "Done when"): a real JoinServer
on 127.0.0.1 over a node in a temporary directory gets generated request
lines, headers and bodies. Every answer must be a well-formed 2xx or 4xx
(one line of JSON {"error": ...} for a 4xx), the server must stay up, and
no file under the node's /etc/wgmesh or /var/lib/wgmesh may change for a
refused request.

WGMESH_FUZZ_SEED repeats a run (the seed is printed); WGMESH_FUZZ_EXAMPLES
(default 500, about 12 s here, well under CI's 60 s) runs longer.
"""

import base64
import json
import os
import random
import sys
import time

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from join_http_helpers import LiveJoinServer, exchange, one_line_error, quiet_host, request_bytes
from unit_helpers import init_node, save_link_to_node_2
from wgmesh_common import joinapi, linkfile, linkkeys
from wgmesh_common.joinserver import FailureLimiter, JoinService
from wgmesh_common.tokens import TokenStore

SEED = int(os.environ.get("WGMESH_FUZZ_SEED") or random.randrange(2 ** 32))
EXAMPLES = int(os.environ.get("WGMESH_FUZZ_EXAMPLES") or 500)
# Timestamps near the clock, from one reading: a strategy must not change under hypothesis.
STARTED = round(time.time())
ROUTES = [("POST", "/connectivity"), ("POST", "/connect"), ("PATCH", "/update"), ("POST", "/disconnect")]


@pytest.fixture
def fuzzed(paths, monkeypatch):
    """Node 0 behind a trusted proxy on 127.0.0.1, with its token and a
    link to node 2 whose key the fuzzer may sign /update with; no
    underlay address, so no /connect can ever make a link."""
    quiet_host(monkeypatch)
    node = init_node(paths, 0, '[api]\ntrusted_proxies = ["127.0.0.1"]\n')
    token = TokenStore(node.paths.tokens_file).default_token()
    psk = save_link_to_node_2(node.paths)  # what node 2 signs with
    service = JoinService(node)
    # Everything comes from 127.0.0.1: the limiter would answer 429 to all
    # but the first few examples and the fuzzer would see nothing else.
    service.limiter = FailureLimiter(allowed=10 ** 9, allowed_in_all=10 ** 9)
    server = LiveJoinServer(service, request_deadline=0.3)
    yield node, token, psk, server
    server.close()


def snapshot(node) -> dict[str, tuple[bytes, int]]:
    files = {}
    for top in (node.paths.config_dir, node.paths.state_dir):
        for path in sorted(top.rglob("*")) if top.exists() else []:
            if path.is_file():
                files[str(path)] = (path.read_bytes(), path.stat().st_mode)
    return files


# ------------------------------------------------------------ strategies

def mostly(right, wrong):
    """Three draws in four from right: deep paths need most fields right."""
    return st.one_of(right, right, right, wrong)


wireguard_keys = st.binary(min_size=32, max_size=32).map(lambda raw: base64.b64encode(raw).decode())
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = mostly(st.text(max_size=40) | st.sampled_from(["", "-", "\n", "wgm2"]),
               st.text(surrogates, min_size=1, max_size=3))
numbers = (st.integers(-3, 300) | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.booleans() | st.none())
scalars = numbers | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


FIELDS_OF = {
    "/connectivity": ("protocol", "id", "token"),
    "/connect": ("protocol", "id", "token", "public_key", "listen_port", "family", "type"),
    "/update": ("protocol", "id", "family", "timestamp", "public_key"),
    "/disconnect": ("protocol", "id", "family", "timestamp"),
}


def api_body(path: str, token: str):
    """Bodies shaped like the path's requests, each field right or wrong,
    sometimes with fields of other paths."""
    fields = {
        "protocol": mostly(st.just(joinapi.PROTOCOL), st.sampled_from([1, 3, 0, -1]) | json_values),
        "id": mostly(st.sampled_from([2, 4, 200, 0, 3]), json_values),
        "token": mostly(st.sampled_from([token, token[:-1], ""]), json_values),
        "public_key": mostly(wireguard_keys, texts),
        "listen_port": mostly(st.sampled_from([51820, 0, 65536]), json_values),
        "family": mostly(st.sampled_from([4, 6, 5]), json_values),
        "type": mostly(st.sampled_from(["wireguard", "amneziawg"]), json_values),
        "timestamp": mostly(st.floats(STARTED - 600, STARTED + 600), numbers),
    }
    own = {name: fields[name] for name in FIELDS_OF.get(path, ())}
    shaped = mostly(st.fixed_dictionaries(own), st.fixed_dictionaries({}, optional=own))
    return mostly(shaped, st.fixed_dictionaries({}, optional=dict(fields, extra=json_values)))


def encode(document, style: str) -> bytes:
    if style == "sorted":
        return json.dumps(document, sort_keys=True).encode()
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


def bodies(path: str, token: str):
    hostile = st.sampled_from([
        b'{"id": ' + b"9" * 5000 + b"}",
        b"[" * 5000 + b"]" * 5000,
        b'{"id": 2, "timestamp": ' + b"9" * 400 + b"}",
        b'{"id": NaN, "timestamp": NaN}',
        b'{"token": "\\ud800"}',
        b"\xff\xfe",
        b"",
    ])
    structured = st.tuples(mostly(api_body(path, token), json_values), st.sampled_from(["sorted", "raw"])).map(
        lambda pair: encode(*pair))
    return st.one_of(structured, structured, structured, hostile, st.binary(max_size=300))


header_names = st.sampled_from(["X-Forwarded-For", "Content-Type", "Connection", "Expect", "Host",
                                "Transfer-Encoding", "Content-Length", joinapi.SIGNATURE_HEADER]) | \
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
header_values = st.sampled_from(["198.51.100.7", "10.0.2.1", "127.0.0.1, 198.51.100.7", "chunked", "close",
                                 "100-continue", "-1", "0"]) | \
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@st.composite
def requests(draw, token: str, psk: bytes):
    odd_routes = st.tuples(st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH", "BREW"]),
                           st.sampled_from(["/", "/connect", "/update?x=1", "/../etc/passwd", "/%00"]))
    method, path = draw(mostly(st.sampled_from(ROUTES), odd_routes))
    body = draw(bodies(path, token))
    headers = draw(st.dictionaries(header_names, header_values, max_size=3))
    signing = draw(st.sampled_from(["none", "link", "other"]))
    if signing != "none":
        key = psk if signing == "link" and path == "/update" else draw(st.binary(min_size=32, max_size=32))
        headers[joinapi.SIGNATURE_HEADER] = linkkeys.sign(key, method, path, body)
    if signing == "link" and path == "/update" and _carries_a_valid_key(body):
        # A correctly signed key change would restart a link on this host.
        headers.pop(joinapi.SIGNATURE_HEADER)
    length = draw(mostly(st.just("exact"), st.sampled_from(["short", "long", "negative", "garbage", "none", "huge"])))
    declared = {"exact": str(len(body)), "short": str(max(len(body) - 1, 0)), "long": str(len(body) + 5),
                "negative": "-1", "garbage": "1x", "none": "", "huge": "99999999999"}[length]
    if length != "exact":
        headers.pop("Content-Length", None)
    return method, path, request_bytes(method, path, body, headers, length=declared)


def _carries_a_valid_key(body: bytes) -> bool:
    try:
        document = json.loads(body)
        linkfile.check_key(document.get("public_key"), "public_key")
    except Exception:  # noqa: BLE001 - whatever fails, the document is not a valid one
        return False
    return True


# ------------------------------------------------------------------ test

def test_the_join_api_answers_every_generated_request_well(fuzzed):
    node, token, psk, server = fuzzed
    sys.__stdout__.write(f"\n[wgmesh] join API fuzz: seed {SEED} (WGMESH_FUZZ_SEED={SEED} repeats it), "
                         f"{EXAMPLES} examples\n")
    sys.__stdout__.flush()
    statuses: dict[int, int] = {}

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests(token, psk))
    def attack(request):
        _method, _path, data = request
        before = snapshot(node)
        answer, sock = exchange(server, data)
        sock.close()
        assert answer is not None, f"no answer to {data[:300]!r}"
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert 200 <= answer.status < 300 or 400 <= answer.status < 500, (answer, data[:300])
        if answer.status >= 400:
            one_line_error(answer)
            assert snapshot(node) == before, f"a refused request changed files: {data[:300]!r}"
        else:
            assert isinstance(answer.document, dict)

    attack()
    sys.__stdout__.write(f"[wgmesh] join API fuzz: answers by status {dict(sorted(statuses.items()))}\n")
    # The server is still up, and still answers an honest request.
    answer, sock = exchange(server, request_bytes("POST", "/connectivity",
                                                  json.dumps({"id": 2, "token": token,
                                                              "protocol": joinapi.PROTOCOL}).encode()))
    sock.close()
    assert answer.status == 200 and answer.document["id"] == 0
