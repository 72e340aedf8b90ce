"""The trust of a link, against real wireguard-go, bird and join-servers in
namespaces: no secret on the wire, joins only as oneself, a link that
carried traffic cannot be taken over, and a new key or MTU reaches the
running link without restarting it (the reload path)."""

import json
import tomllib

import pytest

from wgmesh_common import linkfile, linkkeys

from .helpers import SOME_PUBLIC_KEY, init_two_nodes, pings, send_requests, wait_until
from .test_two_nodes import wireguard_go_pids

NODE0_URL = "http://198.18.0.2:8080"


def link(node, name: str) -> linkfile.Link:
    return linkfile.parse(tomllib.loads((node.files_dir / "links" / f"{name}.toml").read_text()), name)


def secret(node, name: str, kind: str) -> str:
    return (node.files_dir / "links" / f"{name}.{kind}").read_text().strip()


def answer(reply: dict) -> tuple[int, dict]:
    return reply["status"], json.loads(reply["body"])


def device_key(node, name: str) -> str:
    return node.run(["wg", "show", name, "public-key"]).stdout.strip()


@pytest.mark.ids((0, 2, 4, 200))
def test_links_hold_against_members_token_holders_and_strangers(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node4, client = netns_lab[4], netns_lab[200]
    node4.run(["wgmesh", "init", "4"])
    client.run(["wgmesh", "init", "200"])
    node2.run(["wgmesh", "connect", "--transport", "4", NODE0_URL, token])
    client.run(["wgmesh", "connect", "--transport", "4", NODE0_URL, token])
    assert wait_until(lambda: pings(node2, "10.0.0.1") and pings(client, "10.0.0.1"), 30)

    # No secret crossed the wire: each side derived the same preshared key.
    assert secret(node0, "wgm2", "psk") == secret(node2, "wgm0", "psk") == \
        linkkeys.preshared_key(secret(node2, "wgm0", "key"), link(node2, "wgm0").peer_public_key)
    status, served = answer(send_requests(node4, "198.18.0.2", [{
        "method": "POST", "path": "/connect",
        "body": {"id": 4, "token": token, "public_key": link(node2, "wgm0").public_key, "listen_port": 51900,
                 "family": 4}}])[0])
    assert status == 200, served
    assert set(served) == {"protocol", "id", "name", "public_key", "listen_port", "offset", "mtu"}
    node0.run(["wgmesh", "disconnect", "--force", served["name"]])

    # 1. A client, inside the mesh and without a token, cannot claim a server's ID (or another client's).
    for claimed in (6, 210):
        reply = send_requests(client, "10.0.0.1", [{
            "method": "POST", "path": "/connect", "source": "10.0.200.1",
            "body": {"id": claimed, "public_key": link(node2, "wgm0").public_key, "listen_port": 51901,
                     "family": 4}}])[0]
        status, document = answer(reply)
        assert status == 403 and "is not node" in document["error"], (claimed, reply)
        assert not (node0.files_dir / "links" / f"wgm{claimed}.toml").exists()
    assert answer(send_requests(client, "10.0.0.1", [{"method": "POST", "path": "/connectivity",
                                                       "source": "10.0.200.1", "body": {"id": 200}}])[0])[0] == 200

    # 4. The reload path: a new key for node 2's side and a new MTU, on the running links.
    pids = (sorted(wireguard_go_pids(node0)), sorted(wireguard_go_pids(node2)))
    old_key = link(node2, "wgm0").public_key
    node2.run(["wgmesh", "rekey", "wgm0"])
    new_key = link(node2, "wgm0").public_key
    assert new_key != old_key and device_key(node2, "wgm0") == new_key
    assert link(node0, "wgm2").peer_public_key == new_key
    assert secret(node0, "wgm2", "psk") == secret(node2, "wgm0", "psk") != ""
    assert wait_until(lambda: pings(node2, "10.0.0.1"), 15), "the new key carries no traffic"
    node2.run(["wgmesh", "set", "wireguard.mtu", "1380"])
    assert "mtu 1380" in node2.run(["ip", "link", "show", "wgm0"]).stdout
    assert link(node2, "wgm0").mtu == 1380
    assert pings(node2, "10.0.0.1")
    assert (sorted(wireguard_go_pids(node0)), sorted(wireguard_go_pids(node2))) == pids, "a link was restarted"

    # 2. Node 2 goes away for a while; node 0's interface restarts meanwhile, so WireGuard
    # remembers no handshake. Node 4, holding the token, claims node 2's ID with its own key.
    node0.run(["wgmesh-prober"])  # the timer's round: an answer over wgm2 marks it as having carried traffic
    node2.run(["wgmesh", "down"])
    node0.run(["wgmesh-link", "down", "wgm2"])
    node0.run(["wgmesh-link", "up", "wgm2"])
    for family in (4, 6):  # its link, or a second one over the other family
        attack = send_requests(node4, "198.18.0.2", [{
            "method": "POST", "path": "/connect",
            "body": {"id": 2, "token": token, "public_key": SOME_PUBLIC_KEY, "listen_port": 51902,
                     "family": family}}])[0]
        status, document = answer(attack)
        assert status == 409 and "have carried traffic" in document["error"], (family, attack)
    assert link(node0, "wgm2").peer_public_key == new_key
    assert not (node0.files_dir / "links" / "wgm2v6.toml").exists()
    # Node 2 itself, back, adds its IPv6 link: signed with the IPv4 link's key, it is served.
    node2.run(["wgmesh", "up"])
    node2.run(["wgmesh", "connect", "--transport", "6", NODE0_URL, token])
    assert (node0.files_dir / "links" / "wgm2v6.toml").exists()
