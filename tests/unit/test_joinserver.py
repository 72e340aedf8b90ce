"""JoinService.handle(): the join-server's logic, without sockets."""

import json
import time
from pathlib import Path

import pytest

from unit_helpers import make_link, random_key
from wgmesh_common import joinapi, linkfile
from wgmesh_common.joinapi import RequestError
from wgmesh_common.joinserver import FAILURES_ALLOWED, FailureLimiter, JoinService, plain_address
from wgmesh_common.tokens import TokenStore

OUTSIDE = "198.51.100.7"
PUBLIC_LOCAL = "192.0.2.2"
MESH_PEER = "10.0.2.1"
MESH_LOCAL = "10.0.0.1"  # node 0's mesh address


@pytest.fixture(autouse=True)
def quiet_host(monkeypatch):
    """This machine's routes and addresses are the rtnetlink boundary: the
    join-server sees an empty routing table and no underlay of its own,
    so the outcome never depends on the host the tests run on."""
    from wgmesh_common import netlink

    monkeypatch.setattr(netlink, "routes", lambda family, table: [])
    monkeypatch.setattr(netlink, "underlay_addresses", dict)
    # The way back to a mesh address is the link to node 8; to anything
    # else, the underlay.
    monkeypatch.setattr(netlink, "route_interface",
                        lambda address: "wgm8" if address.startswith(("10.", "fd10:")) else "eth0")


@pytest.fixture(autouse=True)
def link_to_node_8(paths):
    """Node 0 has one link, to node 8, that mesh traffic comes in over."""
    paths.links_dir.mkdir(parents=True, exist_ok=True)
    linkfile.save(paths, make_link(name="wgm8", peer_id=8), random_key(), random_key())


@pytest.fixture
def service(node) -> JoinService:
    return JoinService(node)


@pytest.fixture
def token(node) -> str:
    return TokenStore(node.paths.tokens_file).default_token()


def call(service, path, body, method="POST", source=OUTSIDE, local=PUBLIC_LOCAL, headers=None):
    """A request as this version's client sends it (a dict gets the protocol version)."""
    raw = body if isinstance(body, bytes) else json.dumps({joinapi.PROTOCOL_FIELD: joinapi.PROTOCOL, **body}).encode()
    return service.handle(method, path, headers or {}, raw, source, local)


# ------------------------------------------------------------ /connectivity

def test_connectivity_without_a_token_is_401(service):
    status, document, after = call(service, "/connectivity", {"id": 2})
    assert status == 401 and "token is required" in document["error"] and after is None


def test_connectivity_with_a_wrong_token_is_403(service, token):
    status, document, _ = call(service, "/connectivity", {"id": 2, "token": token[:-1] + "?"})
    assert status == 403 and "not valid" in document["error"]


def test_connectivity_with_the_token_answers(service, token, node):
    status, document, after = call(service, "/connectivity", {"id": 2, "token": token})
    assert status == 200 and after is None
    assert document["id"] == 0
    assert document["ipv4"] is None and document["ipv6"] is None  # none configured, none found
    assert document["client"] is False
    assert document["mesh"] == {"subnet": "10.0.0.0/16", "node_prefix": 23, "subnet6": "fd10::/48",
                                "vxlan_subnet": "10.0.251.0/24"}


def test_connectivity_reports_the_configured_public_address(paths):
    from unit_helpers import init_node

    node = init_node(paths, 0, 'public_ipv4 = "203.0.113.9"\n')
    service = JoinService(node)
    status, document, _ = call(service, "/connectivity", {"id": 2}, source=MESH_PEER, local=MESH_LOCAL)
    assert status == 200 and document["ipv4"] == "203.0.113.9"


def test_connectivity_validates_before_anything_else(service, token):
    status, document, _ = call(service, "/connectivity", {"id": 3, "token": token})
    assert status == 400 and "not a multiple of 2" in document["error"]
    status, document, _ = call(service, "/connectivity", {"id": 0, "token": token})
    assert status == 409


def test_expired_or_revoked_tokens_are_403(service, node):
    store = TokenStore(node.paths.tokens_file)
    extra = store.create(uses=1)
    assert call(service, "/connectivity", {"id": 2, "token": extra.value})[0] == 200
    store.revoke(extra.value)
    assert call(service, "/connectivity", {"id": 2, "token": extra.value})[0] == 403


def test_repeated_failures_from_one_source_are_rate_limited(service, token):
    for _ in range(FAILURES_ALLOWED):
        assert call(service, "/connectivity", {"id": 2, "token": "wrong"})[0] == 403
    status, document, _ = call(service, "/connectivity", {"id": 2, "token": "wrong"})
    assert status == 429 and "too many refused requests from 198.51.100.7" in document["error"]
    # Even the right token is refused while the source is blocked ...
    assert call(service, "/connectivity", {"id": 2, "token": token})[0] == 429
    # ... and a missing token counts the same way for another source.
    for _ in range(FAILURES_ALLOWED):
        assert call(service, "/connectivity", {"id": 2}, source="198.51.100.8")[0] == 401
    assert call(service, "/connectivity", {"id": 2}, source="198.51.100.8")[0] == 429
    # Another source is unaffected.
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="203.0.113.50")[0] == 200


def test_successes_do_not_count_as_failures(service, token):
    for _ in range(FAILURES_ALLOWED * 3):
        assert call(service, "/connectivity", {"id": 2, "token": token})[0] == 200


@pytest.mark.parametrize("source, local, status", [
    (MESH_PEER, MESH_LOCAL, 200),          # over the mesh, to the mesh address
    ("fd10:0:0:2::1", "fd10::1", 200),     # the same over IPv6
    ("10.0.3.9", MESH_LOCAL, 403),         # a link address: not the loopback of the node it claims
    (MESH_PEER, PUBLIC_LOCAL, 401),        # a mesh source, but to the public address
    (OUTSIDE, MESH_LOCAL, 401),            # the mesh address, but from outside
    ("10.0.2.1", "10.0.2.1", 401),         # another node's mesh address is not ours
    ("not-an-ip", MESH_LOCAL, 401),
])
def test_requests_from_the_mesh_to_the_mesh_address_need_no_token(service, source, local, status):
    assert call(service, "/connectivity", {"id": 2}, source=source, local=local)[0] == status


@pytest.mark.parametrize("source, claimed, status", [
    ("10.0.200.1", 200, 200),   # a client, as itself
    ("10.0.200.1", 6, 403),     # a client claiming a server ID: it would become transit
    ("10.0.200.1", 210, 403),   # ... or another client's
    ("10.0.2.1", 4, 403),       # a member filling this node's link block under other IDs
    ("fd10:0:0:2::1", 2, 200),
    ("fd10:0:0:2::1", 4, 403),
])
def test_a_tokenless_request_from_the_mesh_must_claim_its_own_id(service, node, source, claimed, status):
    local = MESH_LOCAL if ":" not in source else "fd10::1"
    for path in ("/connectivity", "/connect"):
        body = {"id": claimed} if path == "/connectivity" else \
            {"id": claimed, "public_key": random_key(), "listen_port": 51820, "family": 4}
        answer, document, _ = call(service, path, body, source=source, local=local)
        if status == 403:
            assert answer == 403 and f"is not node {claimed}'s loopback" in document["error"], document
            assert not linkfile.exists(node.paths, linkfile.link_name(claimed, 4))
        elif path == "/connectivity":
            assert answer == status, document


def test_a_mesh_source_whose_way_back_is_not_a_link_needs_a_token(service, monkeypatch):
    from wgmesh_common import netlink

    # A mesh address spoofed on the underlay: the route back is eth0.
    monkeypatch.setattr(netlink, "route_interface", lambda address: "eth0")
    assert call(service, "/connectivity", {"id": 2}, source=MESH_PEER, local=MESH_LOCAL)[0] == 401
    monkeypatch.setattr(netlink, "route_interface", lambda address: None)
    assert call(service, "/connectivity", {"id": 2}, source=MESH_PEER, local=MESH_LOCAL)[0] == 401


# ----------------------------------------------------------------- routing

@pytest.mark.parametrize("method, path, status", [
    ("GET", "/connectivity", 405),
    ("PATCH", "/connect", 405),
    ("POST", "/update", 405),
    ("GET", "/disconnect", 405),
    ("POST", "/", 404),
    ("GET", "/etc/passwd", 404),
    ("POST", "/connectivity/", 404),
])
def test_unknown_paths_and_wrong_methods(service, method, path, status):
    result, document, after = call(service, path, {"id": 2}, method=method)
    assert result == status and after is None
    assert path in document["error"]


def test_bad_bodies_are_4xx_with_a_reason(service):
    status, document, _ = call(service, "/connectivity", b"{not json")
    assert status == 400 and document == {"error": "request body is not valid JSON"}
    status, document, _ = call(service, "/connect", b"x" * (joinapi.MAX_BODY + 1))
    assert status == 413


# ----------------------------------------------------------------- /connect

def test_connect_for_a_link_in_use_is_409_and_refunds_the_token(paths, monkeypatch):
    import time

    from unit_helpers import init_node
    from wgmesh_common import linkops
    from wgmesh_common.wireguard import DeviceStatus, PeerStatus

    node = init_node(paths, 0, 'public_ipv4 = "203.0.113.5"\n')
    service = JoinService(node)
    linkfile.save(node.paths, make_link(), random_key(), random_key())
    # The link carries handshakes from where the request comes from (the WireGuard device is the boundary).
    live = DeviceStatus(peers=[PeerStatus(public_key=random_key(), endpoint=f"{OUTSIDE}:51820",
                                          last_handshake=time.time() - 5)])
    monkeypatch.setattr(linkops, "device_status", lambda paths, config, name: live)
    store = TokenStore(node.paths.tokens_file)
    one_use = store.create(uses=1)
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 4, "token": one_use.value}
    status, document, _ = call(service, "/connect", body)
    assert status == 409 and "have carried traffic" in document["error"]
    # The failed join gave its token use back.
    assert store.load()[0].uses_left == 1


def test_connect_with_a_used_up_token_is_403(service, node):
    store = TokenStore(node.paths.tokens_file)
    one_use = store.create(uses=1)
    assert store.consume(one_use.value)
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 4, "token": one_use.value}
    assert call(service, "/connect", body)[0] == 403
    assert not node.paths.reservations_dir.exists() or list(node.paths.reservations_dir.iterdir()) == []


# ------------------------------------------------------------- /disconnect

def signed(key, fields: dict, path: str = "/disconnect", method: str = "POST", now=None):
    from wgmesh_common import linkkeys

    key = key if isinstance(key, bytes) else key.encode()
    raw = joinapi.signed_body(fields, now)
    return raw, {joinapi.SIGNATURE_HEADER: linkkeys.sign(key, method, path, raw)}


def test_disconnect_of_a_link_that_does_not_exist_is_404(service):
    raw, headers = signed(random_key(), {"id": 4, "family": 4})
    status, document, after = call(service, "/disconnect", raw, headers=headers)
    assert status == 404 and "no link to node 4 over IPv4 whose key signed" in document["error"] and after is None


def test_disconnect_with_a_wrong_signature_is_answered_as_no_link_and_keeps_the_link(service, node, link_psk):
    raw, headers = signed(random_key(), {"id": 2, "family": 4})
    status, document, after = call(service, "/disconnect", raw, headers=headers)
    # The same answer as for a link that does not exist: the link table
    # cannot be read off without a key.
    assert status == 404 and after is None
    assert document == {"error": "this node has no link to node 2 over IPv4 whose key signed this request"}
    assert linkfile.exists(node.paths, "wgm2")


def test_disconnect_without_a_signature_is_401(service, node, link_psk):
    raw, _ = signed(link_psk, {"id": 2, "family": 4})
    status, _, after = call(service, "/disconnect", raw)
    assert status == 401 and after is None
    assert linkfile.exists(node.paths, "wgm2")


def test_a_correct_disconnect_answers_first_and_defers_the_removal(service, node, link_psk):
    raw, headers = signed(link_psk, {"id": 2, "family": 4})
    status, document, after = call(service, "/disconnect", raw, headers=headers)
    assert status == 200
    assert document == {"protocol": joinapi.PROTOCOL, "name": "wgm2", "removed": True}
    assert callable(after)  # not called: it would stop the interface
    # Nothing is removed before the answer is sent.
    assert linkfile.exists(node.paths, "wgm2")
    # A replay of the very same request is refused.
    status, document, after = call(service, "/disconnect", raw, headers=headers)
    assert status == 403 and "replay" in document["error"] and after is None


def test_a_stale_signed_request_is_refused(service, link_psk):
    raw, headers = signed(link_psk, {"id": 2, "family": 4}, now=1000.0)
    status, document, _ = call(service, "/disconnect", raw, headers=headers)
    assert status == 403 and "away from this node's clock" in document["error"]


def test_a_signature_for_another_path_is_refused(service, link_psk):
    raw, headers = signed(link_psk, {"id": 2, "family": 4}, path="/update", method="PATCH")
    assert call(service, "/disconnect", raw, headers=headers)[0] == 404


def test_update_without_a_key_change_is_signed_and_changes_nothing(service, node, link_psk):
    before = node.paths.link_file("wgm2").read_bytes()
    raw, headers = signed(link_psk, {"id": 2, "family": 4}, path="/update", method="PATCH")
    status, document, after = call(service, "/update", raw, method="PATCH", headers=headers, source=MESH_PEER,
                                   local=MESH_LOCAL)
    assert (status, document, after) == (200, {"protocol": joinapi.PROTOCOL, "name": "wgm2", "changed": False}, None)
    assert node.paths.link_file("wgm2").read_bytes() == before


def test_update_with_a_new_key_answers_first_then_reloads_with_both_secrets_derived_anew(service, node, link_psk):
    from wgmesh_common import keys, linkkeys

    new_private = random_key()
    new_public = keys.public_key(new_private)
    raw, headers = signed(link_psk, {"id": 2, "family": 4, "public_key": new_public}, path="/update", method="PATCH")
    status, document, after = call(service, "/update", raw, method="PATCH", headers=headers, source=MESH_PEER,
                                   local=MESH_LOCAL)
    assert status == 200 and document["changed"] is True and callable(after)
    link = linkfile.load(node.paths, "wgm2")
    own_private = linkfile.read_secret(node.paths.link_key("wgm2"))
    assert link.peer_public_key == new_public
    assert linkfile.read_secret(node.paths.link_psk("wgm2")) == linkkeys.preshared_key(new_private, keys.public_key(own_private))


@pytest.mark.parametrize("source, local", [
    (OUTSIDE, PUBLIC_LOCAL),       # the open internet, with a valid signature (a leaked or replayed-elsewhere key)
    ("10.0.6.1", MESH_LOCAL),      # another member of the mesh
])
def test_update_from_anywhere_but_the_peer_is_refused(service, node, link_psk, source, local):
    before = node.paths.link_file("wgm2").read_bytes()
    raw, headers = signed(link_psk, {"id": 2, "family": 4, "public_key": random_key()}, path="/update",
                          method="PATCH")
    status, document, after = call(service, "/update", raw, method="PATCH", headers=headers, source=source,
                                   local=local)
    assert status == 403 and "must come over the mesh from node 2" in document["error"] and after is None
    assert node.paths.link_file("wgm2").read_bytes() == before


def test_a_request_without_the_protocol_version_names_both_versions(service):
    status, document, _ = call(service, "/connectivity", json.dumps({"id": 2}).encode())
    assert status == 400
    assert document["error"] == (f"this node speaks join protocol {joinapi.PROTOCOL}, the request protocol 1: "
                                 "upgrade the requesting node (see the README, Upgrading)")
    newer = json.dumps({"id": 2, "protocol": joinapi.PROTOCOL + 1}).encode()
    assert "upgrade this node" in call(service, "/connectivity", newer)[1]["error"]


# ------------------------------------------- replacing a half of a link

@pytest.fixture
def half_of_node_2(node, link_psk, monkeypatch):
    """Node 0 (with an IPv4 underlay) has a half of a link to node 2 whose
    peer seems gone (no device); the key node 2 signed with."""
    from wgmesh_common import netlink

    monkeypatch.setattr(netlink, "underlay_addresses", lambda: {4: PUBLIC_LOCAL})
    return link_psk


def connect_body(token, public_key=None, family=4):
    return {"id": 2, "public_key": public_key or random_key(), "listen_port": 51820, "family": family, "token": token}


def test_a_half_that_carried_traffic_is_not_replaced_by_a_token_holder(service, node, token, half_of_node_2):
    from wgmesh_common import established

    established.mark(node.paths, "wgm2", linkfile.load(node.paths, "wgm2").public_key)  # the prober once had an answer over it
    before = node.paths.link_file("wgm2").read_bytes()
    status, document, _ = call(service, "/connect", connect_body(token))
    assert status == 409 and "must be signed with one of their keys" in document["error"]
    assert node.paths.link_file("wgm2").read_bytes() == before


def test_a_half_that_carried_traffic_is_replaced_with_proof_of_its_key(service, node, token, half_of_node_2,
                                                                       monkeypatch):
    from wgmesh_common import established, join, linkkeys

    established.mark(node.paths, "wgm2", linkfile.load(node.paths, "wgm2").public_key)
    replaced = []
    monkeypatch.setattr(join, "remove_local", lambda node, name: replaced.append(name) or linkfile.delete(node.paths, name))
    monkeypatch.setattr(join, "_install", lambda node, reservation, link, private_key, psk: None)  # the link-maker is beyond this test
    raw = json.dumps({joinapi.PROTOCOL_FIELD: joinapi.PROTOCOL, **connect_body(token), "timestamp": time.time()}).encode()
    headers = {joinapi.SIGNATURE_HEADER: linkkeys.sign(half_of_node_2, "POST", "/connect", raw)}
    status, document, _ = call(service, "/connect", raw, headers=headers)
    assert status == 200, document
    assert replaced == ["wgm2"]


def test_a_token_holder_cannot_claim_a_linked_node_over_the_other_family(service, node, token, half_of_node_2,
                                                                         monkeypatch):
    from wgmesh_common import established, join, linkkeys, netlink

    monkeypatch.setattr(netlink, "underlay_addresses", lambda: {4: PUBLIC_LOCAL, 6: "2001:db8::2"})
    monkeypatch.setattr(join, "_install", lambda node, reservation, link, private_key, psk: None)
    established.mark(node.paths, "wgm2", linkfile.load(node.paths, "wgm2").public_key)  # node 2's IPv4 link has carried traffic
    status, document, _ = call(service, "/connect", connect_body(token, family=6))
    assert status == 409 and "wgm2" in document["error"], document
    assert not linkfile.exists(node.paths, "wgm2v6")
    # Node 2 itself signs its second family with the key of the link it has: served.
    raw = json.dumps({joinapi.PROTOCOL_FIELD: joinapi.PROTOCOL, **connect_body(token, family=6),
                      "timestamp": time.time()}).encode()
    headers = {joinapi.SIGNATURE_HEADER: linkkeys.sign(half_of_node_2, "POST", "/connect", raw)}
    status, document, _ = call(service, "/connect", raw, headers=headers)
    assert status == 200 and document["name"] == "wgm2v6", document
    assert linkfile.exists(node.paths, "wgm2")  # the IPv4 link stays
    # The same signed request once more is a replay.
    status, document, _ = call(service, "/connect", raw, headers=headers)
    assert status == 403 and "replay" in document["error"], document


def test_a_half_that_never_completed_a_handshake_is_replaced_without_proof(service, node, token, half_of_node_2,
                                                                          monkeypatch):
    from wgmesh_common import join

    replaced = []
    monkeypatch.setattr(join, "remove_local", lambda node, name: replaced.append(name) or linkfile.delete(node.paths, name))
    monkeypatch.setattr(join, "_install", lambda node, reservation, link, private_key, psk: None)
    status, document, _ = call(service, "/connect", connect_body(token))
    assert status == 200, document
    assert replaced == ["wgm2"]


# ------------------------------------------------------------ the limiter

def test_failure_limiter_window():
    limiter = FailureLimiter(allowed=3, window=60)
    for t in (0.0, 10.0, 20.0):
        limiter.check("a", now=t)
        limiter.fail("a", now=t)
    with pytest.raises(RequestError) as caught:
        limiter.check("a", now=30.0)
    assert caught.value.status == 429
    assert "retry in 31 s" in caught.value.reason  # the oldest failure leaves the window at 60
    limiter.check("b", now=30.0)
    # Still blocked just before the first failure expires, free just after.
    with pytest.raises(RequestError):
        limiter.check("a", now=59.9)
    limiter.check("a", now=60.0)
    # Sliding: two failures remain inside the window, one more blocks again.
    limiter.fail("a", now=61.0)
    with pytest.raises(RequestError):
        limiter.check("a", now=62.0)
    limiter.check("a", now=200.0)


def test_failure_limiter_forgets_idle_sources():
    limiter = FailureLimiter(allowed=2, window=10)
    limiter.fail("a", now=0.0)
    limiter.check("a", now=100.0)
    assert "a" not in limiter._failures


@pytest.mark.parametrize("given, plain", [
    ("::ffff:198.18.0.2", "198.18.0.2"),
    ("198.18.0.2", "198.18.0.2"),
    ("2001:db8:0::1", "2001:db8::1"),
    ("garbage", "garbage"),
])
def test_plain_address(given, plain):
    assert plain_address(given) == plain


# ------------------------------------------------------ collisions, clients

def bird_routes_to(*destinations: str):
    import ipaddress

    from wgmesh_common.netlink import Route

    def routes(family: int, table: int):
        return [Route(ipaddress.ip_network(d), None, "wgm6", 12) for d in destinations
                if ipaddress.ip_network(d).version == family]

    return routes


def test_an_id_already_in_the_mesh_is_a_collision(service, token, monkeypatch):
    from wgmesh_common import join

    # The routing table (the rtnetlink boundary) says node 2 is reachable already.
    monkeypatch.setattr(join.netlink, "routes", bird_routes_to("10.0.2.1/32", "fd10:0:0:4::1/128"))
    status, document, _ = call(service, "/connectivity", {"id": 2, "token": token})
    assert status == 409 and "ID 2 is already used by another node of this mesh (collision)" in document["error"]
    status, _, _ = call(service, "/connectivity", {"id": 4, "token": token})
    assert status == 409
    assert call(service, "/connectivity", {"id": 6, "token": token})[0] == 200


def test_a_node_asking_from_its_own_mesh_address_is_no_collision(service, token, monkeypatch):
    from wgmesh_common import join

    monkeypatch.setattr(join.netlink, "routes", bird_routes_to("10.0.2.1/32"))
    assert call(service, "/connectivity", {"id": 2}, source="10.0.2.1", local=MESH_LOCAL)[0] == 200
    # The same ID from another mesh address, with a token, is still a collision.
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="10.0.6.1", local=MESH_LOCAL)[0] == 409


def test_a_linked_peer_is_no_collision(service, node, token, monkeypatch):
    from wgmesh_common import join

    monkeypatch.setattr(join.netlink, "routes", bird_routes_to("10.0.2.1/32"))
    linkfile.save(node.paths, make_link(), random_key(), random_key())
    assert call(service, "/connectivity", {"id": 2, "token": token})[0] == 200


def test_a_linked_id_asking_from_another_address_is_a_collision(service, node, token, monkeypatch):
    import time

    from wgmesh_common import join, linkops
    from wgmesh_common.wireguard import DeviceStatus, PeerStatus

    monkeypatch.setattr(join.netlink, "routes", bird_routes_to("10.0.2.1/32"))
    linkfile.save(node.paths, make_link(), random_key(), random_key())
    live = DeviceStatus(public_key=random_key(), listen_port=51820,
                        peers=[PeerStatus(public_key=random_key(), endpoint="198.51.100.2:51820",
                                          last_handshake=time.time() - 5)])
    # The WireGuard device (its UAPI socket) is the boundary: it says where node 2 is.
    monkeypatch.setattr(linkops, "device_status", lambda paths, config, name: live)
    status, document, _ = call(service, "/connectivity", {"id": 2, "token": token}, source="198.51.100.9")
    assert status == 409 and "collision" in document["error"] and "another address" in document["error"]
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="198.51.100.2")[0] == 200
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="::ffff:198.51.100.2")[0] == 200
    # Over another family there is nothing to compare with: node 2 adding its IPv6 link.
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="2001:db8::9")[0] == 200
    # A stale link (no handshake for minutes) says nothing about where node 2 is now.
    live.peers[0].last_handshake = time.time() - 600
    assert call(service, "/connectivity", {"id": 2, "token": token}, source="198.51.100.9")[0] == 200


@pytest.mark.parametrize("source, endpoints, elsewhere", [
    ("198.51.100.9", {"198.51.100.2"}, True),
    ("198.51.100.2", {"198.51.100.2", "2001:db8::2"}, False),
    ("::ffff:198.51.100.9", {"198.51.100.2"}, True),
    ("2001:db8::9", {"198.51.100.2"}, False),
    ("2001:db8::9", {"2001:db8::2"}, True),
    ("198.51.100.9", set(), False),
    ("not-an-address", {"198.51.100.2"}, False),
])
def test_comes_from_elsewhere(source, endpoints, elsewhere):
    from wgmesh_common import join

    assert join.comes_from_elsewhere(source, endpoints) is elsewhere


def test_a_client_node_serves_no_links_and_refunds_the_token(paths):
    from unit_helpers import init_node

    node = init_node(paths, 200, 'public_ipv4 = "203.0.113.5"\n')
    service = JoinService(node)
    store = TokenStore(node.paths.tokens_file)
    one_use = store.create(uses=1)
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 4, "token": one_use.value}
    status, document, _ = call(service, "/connect", body)
    assert status == 403 and "this node is a client" in document["error"]
    assert store.load()[0].uses_left == 1
    assert not linkfile.exists(node.paths, "wgm2")


def test_connect_over_a_family_this_node_lacks_is_400_and_refunds(paths):
    from unit_helpers import init_node

    node = init_node(paths, 0, 'public_ipv4 = "203.0.113.5"\n')
    service = JoinService(node)
    store = TokenStore(node.paths.tokens_file)
    one_use = store.create(uses=1)
    body = {"id": 2, "public_key": random_key(), "listen_port": 51820, "family": 6, "token": one_use.value}
    status, document, _ = call(service, "/connect", body)
    assert status == 400 and "no IPv6 underlay address" in document["error"]
    assert store.load()[0].uses_left == 1
    assert Path(node.paths.reservations_dir).exists() is False or not list(node.paths.reservations_dir.iterdir())
