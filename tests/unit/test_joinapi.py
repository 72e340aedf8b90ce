"""The join API wire format: request validation and signatures."""

import json
import secrets

import pytest

from wgmesh_common import joinapi, linkkeys
from wgmesh_common.joinapi import RequestError

OWN_ID = 0
KEY = "g6hk3EOx4cQY2ikDCY55Mp4gakfcnHLIphS8nsFBoAc="


def good_connect(**overrides) -> dict:
    body = {"id": 2, "public_key": KEY, "listen_port": 51820, "family": 4, "type": "wireguard", "token": "t"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def parse_raw_connect(raw: bytes, plan):
    return joinapi.parse_connect(joinapi.parse_body(raw), plan, OWN_ID)


BAD_CONNECT = [
    (b"not json", 400, "request body is not valid JSON"),
    (b"\xff\xfe", 400, "request body is not valid JSON"),
    (b"[1, 2]", 400, "request body must be a JSON object"),
    (b'"id"', 400, "request body must be a JSON object"),
    (b"x" * (joinapi.MAX_BODY + 1), 413, "request body larger than 16384 bytes"),
    (json.dumps(good_connect(id=...)).encode(), 400, "missing field 'id'"),
    (json.dumps(good_connect(id="2")).encode(), 400, "field 'id' must be an integer"),
    (json.dumps(good_connect(id=True)).encode(), 400, "field 'id' must be an integer"),
    (json.dumps(good_connect(id=2.0)).encode(), 400, "field 'id' must be an integer"),
    (json.dumps(good_connect(id=255)).encode(), 400, "id 255 is out of range (0-254)"),
    (json.dumps(good_connect(id=-2)).encode(), 400, "id -2 is out of range (0-254)"),
    (json.dumps(good_connect(id=3)).encode(), 400, "id 3 is not a multiple of 2"),
    (json.dumps(good_connect(id=250)).encode(), 400, "id 250 would overlap the VXLAN subnet"),
    (json.dumps(good_connect(id=OWN_ID)).encode(), 409, "id 0 is this node's own ID"),
    (json.dumps(good_connect(public_key=...)).encode(), 400, "missing field 'public_key'"),
    (json.dumps(good_connect(public_key=5)).encode(), 400, "field 'public_key' must be a string"),
    (json.dumps(good_connect(public_key="abc")).encode(), 400, "public_key is not valid base64"),
    (json.dumps(good_connect(public_key=KEY[:-4])).encode(), 400, "public_key must decode to 32 bytes"),
    (json.dumps(good_connect(listen_port=0)).encode(), 400, "listen_port 0 is out of range (1-65535)"),
    (json.dumps(good_connect(listen_port=65536)).encode(), 400, "listen_port 65536 is out of range"),
    (json.dumps(good_connect(listen_port="51820")).encode(), 400, "field 'listen_port' must be an integer"),
    (json.dumps(good_connect(family=5)).encode(), 400, "family must be 4 or 6, not 5"),
    (json.dumps(good_connect(family=False)).encode(), 400, "field 'family' must be an integer"),
    (json.dumps(good_connect(type="vxlan")).encode(), 400, "unknown link type 'vxlan'"),
    (json.dumps(good_connect(type=1)).encode(), 400, "field 'type' must be a string"),
    (json.dumps(good_connect(token=123)).encode(), 400, "field 'token' must be a string"),
    (json.dumps(good_connect(colour="red")).encode(), 400, "unknown field 'colour'"),
]


@pytest.mark.parametrize("raw, status, reason", BAD_CONNECT, ids=[r for _, _, r in BAD_CONNECT])
def test_bad_connect_requests(plan, raw, status, reason):
    with pytest.raises(RequestError) as caught:
        parse_raw_connect(raw, plan)
    error = caught.value
    assert error.status == status
    assert 400 <= error.status < 500
    assert reason in error.reason
    assert "\n" not in error.reason


def test_a_good_connect_request(plan):
    request = parse_raw_connect(json.dumps(good_connect()).encode(), plan)
    assert request == joinapi.ConnectRequest(2, KEY, 51820, 4, "wireguard", "t")
    # type and token are optional.
    request = parse_raw_connect(json.dumps(good_connect(type=..., token=...)).encode(), plan)
    assert request.link_type == "wireguard" and request.token is None


def test_request_error_reason_is_one_line():
    error = RequestError(400, "first line\n  second line")
    assert error.reason == "first line second line"


@pytest.mark.parametrize("body, status, reason", [
    ({}, 400, "missing field 'id'"),
    ({"id": "2"}, 400, "field 'id' must be an integer"),
    ({"id": 0}, 409, "own ID"),
    ({"id": 2, "token": 5}, 400, "field 'token' must be a string"),
    ({"id": 2, "public_key": KEY}, 400, "unknown field 'public_key'"),
])
def test_bad_connectivity_requests(plan, body, status, reason):
    with pytest.raises(RequestError) as caught:
        joinapi.parse_connectivity(body, plan, OWN_ID)
    assert caught.value.status == status and reason in caught.value.reason


def test_a_good_connectivity_request(plan):
    assert joinapi.parse_connectivity({"id": 2}, plan, OWN_ID) == joinapi.ConnectivityRequest(2, None)
    assert joinapi.parse_connectivity({"id": 4, "token": "x"}, plan, OWN_ID).token == "x"


@pytest.mark.parametrize("body, allow, status, reason", [
    ({"id": 2, "family": 4}, set(), 400, "field 'timestamp' must be a number"),
    ({"id": 2, "family": 4, "timestamp": "1"}, set(), 400, "field 'timestamp' must be a number"),
    ({"id": 2, "family": 4, "timestamp": True}, set(), 400, "field 'timestamp' must be a number"),
    ({"id": 2, "family": 7, "timestamp": 1}, set(), 400, "family must be 4 or 6"),
    ({"id": 2, "family": 4, "timestamp": 1, "public_key": KEY}, set(), 400, "unknown field 'public_key'"),
    ({"id": 2, "family": 4, "timestamp": 1, "public_key": "x"}, {"public_key"}, 400, "public_key is not valid base64"),
    ({"id": 0, "family": 4, "timestamp": 1}, set(), 409, "own ID"),
])
def test_bad_signed_requests(plan, body, allow, status, reason):
    with pytest.raises(RequestError) as caught:
        joinapi.parse_signed(body, plan, OWN_ID, allow)
    assert caught.value.status == status and reason in caught.value.reason


def test_a_good_signed_request(plan):
    request = joinapi.parse_signed({"id": 2, "family": 6, "timestamp": 5, "public_key": KEY}, plan, OWN_ID,
                                   {"public_key"})
    assert request == joinapi.SignedRequest(2, 6, 5.0, KEY)


# --------------------------------------------------------------- signatures

def test_signature_verifies():
    key = secrets.token_bytes(32)
    body = joinapi.signed_body({"id": 2, "family": 4}, now=1000.5)
    assert json.loads(body) == {"id": 2, "family": 4, "protocol": joinapi.PROTOCOL, "timestamp": 1000.5}
    sig = linkkeys.sign(key, "post", "/disconnect", body)
    assert len(sig) == 64 and int(sig, 16) >= 0
    joinapi.verify_signature(key, "POST", "/disconnect", body, sig)
    joinapi.verify_signature(key, "POST", "/disconnect", body, "  " + sig.upper() + "\n")


@pytest.mark.parametrize("change", ["body", "key", "path", "method"])
def test_a_signature_over_anything_else_is_refused(change):
    key, body = secrets.token_bytes(32), joinapi.signed_body({"id": 2, "family": 4}, now=1000.0)
    sig = linkkeys.sign(key, "POST", "/disconnect", body)
    args = {"key": key, "method": "POST", "path": "/disconnect", "body": body}
    args.update({
        "body": {"body": body.replace(b'"id": 2', b'"id": 4')},
        "key": {"key": secrets.token_bytes(32)},
        "path": {"path": "/update"},
        "method": {"method": "PATCH"},
    }[change])
    with pytest.raises(RequestError) as caught:
        joinapi.verify_signature(args["key"], args["method"], args["path"], args["body"], sig)
    assert caught.value.status == 403
    assert caught.value.reason == "signature does not match this link's key"


@pytest.mark.parametrize("claimed", [None, ""])
def test_a_missing_signature_header_is_401(claimed):
    with pytest.raises(RequestError) as caught:
        joinapi.verify_signature(secrets.token_bytes(32), "POST", "/disconnect", b"{}", claimed)
    assert caught.value.status == 401
    assert caught.value.reason == "missing X-Wgmesh-Signature header"


# --------------------------------------------------------------- freshness

@pytest.mark.parametrize("timestamp, last, now", [
    (1000.0, None, 1000.0),
    (1000.0, 999.9, 1000.0),
    (700.0, None, 1000.0),  # exactly at the skew limit
    (1300.0, None, 1000.0),
])
def test_check_fresh_accepts(timestamp, last, now):
    joinapi.check_fresh(timestamp, last, now)


@pytest.mark.parametrize("timestamp, last, now, reason", [
    (699.0, None, 1000.0, "more than 300 s away"),
    (1301.0, None, 1000.0, "more than 300 s away"),
    (1000.0, 1000.0, 1000.0, "replay refused"),
    (999.0, 1000.0, 1000.0, "replay refused"),
])
def test_check_fresh_refuses(timestamp, last, now, reason):
    with pytest.raises(RequestError) as caught:
        joinapi.check_fresh(timestamp, last, now)
    assert caught.value.status == 403 and reason in caught.value.reason


def test_increasing_timestamps_are_accepted_in_turn():
    last = None
    for t in (1000.0, 1000.000001, 1001.0, 1100.0):
        joinapi.check_fresh(t, last, 1050.0)
        last = t


# ------------------------------------------------------- the /connect answer

def _answer_document(**changes):
    from unit_helpers import random_key

    document = {"protocol": 2, "id": 2, "name": "wgm0", "public_key": random_key(), "listen_port": 51820,
                "offset": 4, "mtu": 1420}
    document.update(changes)
    return document


def test_the_connect_answer_is_the_protocol_2_document():
    from wgmesh_common.joinapi import ConnectAnswer

    answer = ConnectAnswer(peer_id=2, public_key="k", listen_port=51820, offset=4, name="wgm0", mtu=1420)
    # The same keys, in the same order, as every protocol-2 node sends.
    assert list(answer.to_wire()) == ["protocol", "id", "name", "public_key", "listen_port", "offset", "mtu"]
    assert answer.to_wire()["protocol"] == 2


def test_a_connect_answer_reads_back_as_written():
    from wgmesh_common.joinapi import ConnectAnswer

    document = _answer_document()
    answer = ConnectAnswer.from_wire(json.loads(json.dumps(document)))
    assert answer.to_wire() == document
    # Fields of a newer node are ignored; name and mtu are not needed.
    assert ConnectAnswer.from_wire({**document, "obfuscation": {"kind": "x"}}) == answer
    del document["name"], document["mtu"]
    assert ConnectAnswer.from_wire(document).offset == 4


@pytest.mark.parametrize("field, value, reason", [
    ("id", "2", "id '2'"),
    ("id", True, "id True"),
    ("public_key", "not-a-key", "public_key is not valid base64"),
    ("listen_port", 70000, "listen_port 70000"),
    ("listen_port", None, "listen_port None"),
    ("offset", -2, "offset -2"),
    ("offset", 4.5, "offset 4.5"),
    ("name", "../etc", "name '../etc'"),
    ("mtu", "1420", "mtu '1420'"),
])
def test_a_connect_answer_with_a_bad_field_names_it(field, value, reason):
    from wgmesh_common.joinapi import ConnectAnswer, UnusableAnswer

    with pytest.raises(UnusableAnswer) as caught:
        ConnectAnswer.from_wire(_answer_document(**{field: value}))
    assert str(caught.value) == reason
