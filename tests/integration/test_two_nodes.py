"""Two servers, one token, one command: each reaches the other's mesh
address over a WireGuard link routed by bird2 OSPF; disconnect undoes it."""

import stat
import time

import pytest

from .helpers import SOME_PUBLIC_KEY, init_two_nodes, interfaces, one_line, pings, report, send_requests, wait_until

NODE0_URL = "http://198.18.0.2:8080"


def links_dir(node):
    return node.files_dir / "links"


def wireguard_go_pids(node) -> list[int]:
    """wireguard-go processes in this node's netns (the PID namespace is the
    host's, so pgrep would see every node's)."""
    return [pid for pid in node.pids() if process_name(pid) == "wireguard-go"]


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return None


def ospf_states(node) -> str:
    return node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors"], check=False).stdout


@pytest.mark.ids((0, 2))
def test_two_nodes_join_route_and_disconnect(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)

    node2.run(["wgmesh", "connect", NODE0_URL, token])
    connected = time.monotonic()
    assert wait_until(lambda: pings(node0, "10.0.2.1"), timeout=20), "10.0.2.1 never answered node 0"
    reachable_after = time.monotonic() - connected
    report(f"10.0.2.1 reachable from node 0 {reachable_after:.1f} s after 'wgmesh connect' returned")
    assert reachable_after <= 15

    assert pings(node2, "10.0.0.1")
    assert wait_until(lambda: pings(node0, "fd10:0:0:2::1"), timeout=10)
    assert pings(node2, "fd10::1")
    # The packets go over the WireGuard link, not the underlay.
    assert "dev wgm2" in node0.run(["ip", "route", "get", "10.0.2.1"]).stdout
    assert wait_until(lambda: ospf_states(node0).count("Full") >= 1 and ospf_states(node2).count("Full") >= 1, 10)

    # One link per transport family (the lab has IPv4 and IPv6 underlays).
    for node, peer in ((node0, 2), (node2, 0)):
        for name in (f"wgm{peer}", f"wgm{peer}v6"):
            assert (links_dir(node) / f"{name}.toml").exists()
            for secret in (f"{name}.key", f"{name}.psk"):
                assert stat.S_IMODE((links_dir(node) / secret).stat().st_mode) == 0o600
            assert name in interfaces(node)
    assert len(wireguard_go_pids(node0)) == 2 and len(wireguard_go_pids(node2)) == 2

    status = node2.run(["wgmesh", "status"]).stdout
    assert "wgm0 " in status and "Full" in status and " up " in status

    # The mesh as a picture: SVG where graphviz is installed (tests/setup installs it).
    node0.run(["wgmesh", "graph", "-o", "/run/mesh.svg"])
    svg = node0.run(["cat", "/run/mesh.svg"]).stdout
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert ">node 0<" in svg and ">node 2<" in svg and ">100, 100<" in svg  # both nodes, both links' costs

    node2.run(["wgmesh", "disconnect", "--yes"])
    for node, peer in ((node0, 2), (node2, 0)):
        assert wait_until(lambda: not ({f"wgm{peer}", f"wgm{peer}v6"} & interfaces(node)), 10)  # noqa: B023 - called now
        assert not list(links_dir(node).glob("*"))
        assert wait_until(lambda: not wireguard_go_pids(node), 10)  # noqa: B023 - called now
    assert not pings(node0, "10.0.2.1")


@pytest.mark.ids((0, 2))
def test_disconnect_from_the_serving_side_removes_both(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", "--transport", "4", NODE0_URL, token])
    assert wait_until(lambda: pings(node0, "10.0.2.1"), 20)
    # Node 0 tells node 2 over the mesh (node 2's API listens on 10.0.2.1).
    node0.run(["wgmesh", "disconnect", "wgm2"])
    assert wait_until(lambda: not (links_dir(node2) / "wgm0.toml").exists(), 10)
    assert "wgm0" not in interfaces(node2) and "wgm2" not in interfaces(node0)


@pytest.mark.ids((0, 2))
def test_force_removes_this_side_when_the_peer_is_gone(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", "--transport", "4", NODE0_URL, token])
    node0.run(["wgmesh", "down"])
    refused = node2.run(["wgmesh", "disconnect", "wgm0"], check=False, timeout=120)
    assert refused.returncode != 0 and one_line(refused.stderr) and "--force" in refused.stderr
    assert (links_dir(node2) / "wgm0.toml").exists()
    node2.run(["wgmesh", "disconnect", "--force", "wgm0"], timeout=120)
    assert not (links_dir(node2) / "wgm0.toml").exists() and "wgm0" not in interfaces(node2)


@pytest.mark.ids((0, 2))
def test_a_join_whose_answer_was_lost_can_be_made_again(netns_lab):
    import tomllib

    node0, node2, token = init_two_nodes(netns_lab)
    # Node 0 serves a /connect whose answer never reaches node 2's wgmesh:
    # its half exists, node 2 has none and no handshake ever happens.
    lost = {"id": 2, "token": token, "public_key": SOME_PUBLIC_KEY,
            "listen_port": 51820, "family": 4}
    answer = send_requests(node2, "198.18.0.2", [{"method": "POST", "path": "/connect", "body": lost}])[0]
    assert answer["status"] == 200, answer
    assert (links_dir(node0) / "wgm2.toml").exists() and not (links_dir(node2) / "wgm0.toml").exists()

    # Asked again, node 0 replaces the dead half instead of refusing a duplicate.
    node2.run(["wgmesh", "connect", "--transport", "4", NODE0_URL, token])
    assert wait_until(lambda: pings(node2, "10.0.0.1"), 20)
    served = tomllib.loads((links_dir(node0) / "wgm2.toml").read_text())
    joined = tomllib.loads((links_dir(node2) / "wgm0.toml").read_text())
    assert served["peer_public_key"] == joined["public_key"] and joined["peer_public_key"] == served["public_key"]


@pytest.mark.ids((0, 2))
def test_a_node_whose_loopback_goes_is_no_longer_routed_to(netns_lab):
    # bird announces the IPv4 loopback as an OSPFv2 stubnet, which does not
    # follow lo's address: the node unit's stop (loopback down) withdraws it
    # and its start announces it again.
    node0, node2, token = init_two_nodes(netns_lab)
    node2.run(["wgmesh", "connect", NODE0_URL, token])

    def routed() -> bool:
        return "10.0.2.1" in node0.run(["ip", "route", "show", "table", "all", "10.0.2.1"]).stdout

    assert wait_until(lambda: pings(node0, "10.0.2.1"), timeout=20)
    node2.run(["wgmesh-link", "loopback", "down"])
    assert wait_until(lambda: not routed(), timeout=20), "node 0 still routes to node 2's loopback"
    node2.run(["wgmesh-link", "loopback", "up"])
    assert wait_until(lambda: pings(node0, "10.0.2.1"), timeout=20), "node 2's loopback is not routed again"
