"""A mesh pass that is still busy when a new node appears in the routes
links with that node too, without waiting for the next pass: in a growing
mesh nodes appear seconds apart, and systemd starts no second pass while
one runs."""

import subprocess
import sys

import pytest

from wgmesh_common.netlink import MESH_TABLE

from .helpers import interfaces, report, wait_until

NODE0_URL = "http://198.18.0.2:8080"

# A join of this node's to node 4 that is under way (a second connect, say):
# it holds the reservation of wgm4 until the test ends it, and the pass waits
# for it (join.BUSY_WAIT) before doing anything about node 4.
HOLD_WGM4 = """
import sys
from wgmesh_common.commands.common import load_node
node = load_node()
node.allocator.reserve(4, "dialer", 4)
print("held", flush=True)
sys.stdin.read()
"""


def routes_to(node, address: str) -> bool:
    """Whether bird has put a route to address into the mesh's table (which
    `ip` calls missing, an error, until bird has put a first route there)."""
    shown = node.run(["ip", "-4", "route", "show", "table", str(MESH_TABLE), address], check=False)
    return shown.returncode == 0 and bool(shown.stdout.strip())


@pytest.mark.ids((0, 2, 4, 6))
def test_a_running_pass_links_a_node_that_appears_meanwhile(netns_lab):
    node0, node2, node4, node6 = (netns_lab[i] for i in (0, 2, 4, 6))
    node0.run(["wgmesh", "init", "0", "--public", "--no-start"])
    for node in (node2, node4, node6):
        node.run(["wgmesh", "init", str(node.mesh_id), "--no-start"])
    for node in (node0, node2, node4, node6):
        node.run(["wgmesh", "set", "wireguard.transport", "4"])
        node.run(["wgmesh", "up"])
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    for node in (node4, node6):
        node.run(["wgmesh", "connect", NODE0_URL, token])
    assert wait_until(lambda: routes_to(node6, "10.0.4.1"), 30), "node 6 never routed to node 4"

    holder = node6.popen([sys.executable, "-c", HOLD_WGM4], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    passing, output = None, ""
    try:
        assert holder.stdout.readline().strip() == "held"
        passing = node6.popen(["wgmesh", "-v", "mesh"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The pass has started and waits on node 4; node 2 is not in the mesh yet.
        assert not routes_to(node6, "10.0.2.1")
        node2.run(["wgmesh", "connect", NODE0_URL, token])
        linked = wait_until(lambda: "wgm2" in interfaces(node6) and (node6.files_dir / "links/wgm2.toml").exists(), 40)
        running = passing.poll() is None
        routed = routes_to(node6, "10.0.2.1")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        if passing:
            output = passing.communicate(timeout=120)[0]
    report(f"mesh pass on node 6: {output.strip()!r}")
    assert running, "the pass ended before node 2 appeared (did it wait for node 4?)"
    assert routed, "node 6 never routed to node 2"
    assert linked, "the running pass did not link with node 2, which appeared after it began"
    lines = [line for line in output.splitlines() if line.startswith("linked with")]
    assert lines == ["linked with node 2: wgm2", "linked with node 4: wgm4"] or \
        sorted(lines) == ["linked with node 2: wgm2", "linked with node 4: wgm4"]
