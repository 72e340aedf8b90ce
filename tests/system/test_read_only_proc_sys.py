"""A node in a container whose /proc/sys is read-only (nspawn's default, as
in unprivileged LXC) cannot switch forwarding on. It must come up as a
leaf with a one-line warning, not a failed unit; its peers must route no
traffic through it; the mesh pass must say which node it cannot link with
and why, and exit non-zero, never "nothing to do".

One lab for the module: node 0, the node the others join, boots without
SYSTEMD_NSPAWN_API_VFS_WRITABLE; nodes 2 and 4 boot as usual. The tests
run in the order written."""

import ipaddress
import sys

import pytest

from tests.integration.helpers import pings, report, wait_until
from tests.system.conftest import start_mesh_lab
from tests.system.meshcheck import MESH_TABLE, link_files, link_problems, reach_problems
from tests.system.test_full_mesh import NODE0_URL, routes_via

NODE2_URL = "http://198.18.2.2:8080"
BIRDC = ["birdc", "-s", "/run/wgmesh/bird.ctl"]


@pytest.fixture(scope="module")
def lab(deb):
    mesh = start_mesh_lab((0, 2, 4), deb, name_prefix="ro", read_only_proc_sys=(0,))
    failed = True
    try:
        mesh.init = {}
        for node_id in (0, 2, 4):
            argv = ["wgmesh", "init", str(node_id)] + (["--public"] if node_id in (0, 2) else [])
            mesh.init[node_id] = mesh[node_id].run(argv)
            mesh[node_id].run(["wgmesh", "set", "wireguard.transport", "4"])
        token = mesh[0].run(["wgmesh", "token"]).stdout.strip()
        for node_id in (2, 4):
            mesh[node_id].run(["wgmesh", "connect", NODE0_URL, token], timeout=120)
        yield mesh
        failed = False
    finally:
        mesh.lab.close(raise_on_problems=not failed and sys.exc_info()[0] is None)


def mesh_unit_failed(node) -> bool:
    return node.run(["systemctl", "is-failed", "wgmesh-mesh.service"], check=False).stdout.strip() == "failed"


def test_the_node_is_a_leaf_that_says_what_to_change(lab):
    node0 = lab[0]
    # The lab did boot it read-only, and forwarding is off there.
    assert node0.run("echo 1 > /proc/sys/net/ipv4/ip_forward", check=False).returncode != 0
    assert node0.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"

    warning = lab.init[0].stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: this node cannot forward:"), lab.init[0].stderr
    assert "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network" in warning[0]
    report(f"wgmesh init on a read-only /proc/sys: {warning[0]}")
    assert "cannot forward" not in lab.init[2].stderr  # a writable node warns of nothing

    assert node0.run(["systemctl", "is-active", "wgmesh-node.service"], check=False).stdout.strip() == "active"
    journal = node0.run(["journalctl", "-u", "wgmesh-node.service", "--no-pager", "-o", "cat"]).stdout
    assert "Traceback" not in journal and "this node cannot forward:" in journal, journal
    failed = node0.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout
    assert "wgmesh" not in failed, failed

    status = node0.run(["wgmesh", "status"]).stdout
    assert [line for line in status.splitlines() if line.startswith("this node cannot forward: ")], status
    # Its bird announces it as a stub router, so even a peer that does not
    # know routes through it only as a last resort (OSPFv2) or never (v3).
    assert "stub router yes;" in node0.run(["cat", "/run/wgmesh/bird.conf"]).stdout


def test_its_peers_know_and_the_mesh_pass_reports_what_it_cannot_link(lab):
    node4 = lab[4]
    for node in (lab[2], node4):
        assert link_files(node)["wgm0"].get("peer_forwards") is False
        status = node.run(["wgmesh", "status"]).stdout
        assert "peers that cannot forward (no transit through them): node 0" in status, status
    # It reaches and is reached over its own links, as a leaf.
    nodes = [lab[0], lab[2], node4]
    assert wait_until(lambda: not reach_problems(nodes[1:], nodes[:1]) and not reach_problems(nodes[:1], nodes[1:]),
                      30), reach_problems(nodes[1:], nodes[:1]) + reach_problems(nodes[:1], nodes[1:])

    # OSPF knows node 2 only through node 0: bird has the route, the
    # kernel does not, and the mesh pass says so instead of timing out.
    assert wait_until(lambda: "wgm0" in node4.run(BIRDC + ["show", "route", "for", "10.0.2.1"]).stdout, 30)
    assert "10.0.2" not in node4.run(["ip", "route", "show", "table", MESH_TABLE, "10.0.2.1"]).stdout
    result = node4.run(["wgmesh", "mesh"], check=False)
    assert result.returncode == 1, result
    assert "nothing to do" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("node 2: not linked: ")]
    assert len(lines) == 1 and "node 0 (cannot forward)" in lines[0], result.stdout
    report(f"mesh pass on node 4 (exit {result.returncode}): {lines[0]}")
    # The timer's passes fail alike: the unit shows it, and keeps being run.
    node4.run(["systemctl", "start", "wgmesh-mesh.service"], check=False, timeout=120)
    assert mesh_unit_failed(node4)


def test_the_others_link_directly_and_never_route_through_it(lab):
    node0, node2, node4 = lab[0], lab[2], lab[4]
    token2 = node2.run(["wgmesh", "token"]).stdout.strip()
    node4.run(["wgmesh", "connect", NODE2_URL, token2], timeout=120)
    nodes = [node0, node2, node4]
    assert wait_until(lambda: not link_problems(nodes, (4,)) and not reach_problems(nodes), 30), \
        link_problems(nodes, (4,)) + reach_problems(nodes)
    result = node4.run(["wgmesh", "mesh"], check=False)
    assert result.returncode == 0 and "nothing to do" in result.stdout, result
    assert wait_until(lambda: not mesh_unit_failed(node4), 15), "the mesh timer stopped after a failed pass"

    # With the direct link between 2 and 4 down, OSPF's only path between
    # them is through node 0: it stays out of both kernels.
    for node, other in ((node4, 2), (node2, 4)):
        node.run(["systemctl", "stop", f"wgmesh-link@wgm{other}.service"])
    assert wait_until(lambda: not pings(node4, "10.0.2.1"), 15)
    assert wait_until(lambda: "wgm0" in node4.run(BIRDC + ["show", "route", "for", "10.0.2.1"]).stdout, 15)
    for node in (node2, node4):
        link = link_files(node)["wgm0"]
        for family, own_block, local, length in ((4, "10.0.0.0/23", "local4", 31), (6, "fd10::/64", "local6", 127)):
            allowed = (ipaddress.ip_network(own_block), ipaddress.ip_interface(f"{link[local]}/{length}").network)
            leaked = [r for r in routes_via(node, {"wgm0"}, family)
                      if not any(ipaddress.ip_network(r.split()[0]).subnet_of(a) for a in allowed)]
            assert leaked == [], f"node {node.mesh_id} routes through node 0: {leaked}"
            assert routes_via(node, {"wgm0"}, family), "node 0's own routes are there"
    for node, other in ((node4, 2), (node2, 4)):
        node.run(["systemctl", "start", f"wgmesh-link@wgm{other}.service"])
    assert wait_until(lambda: pings(node4, "10.0.2.1"), 30)
