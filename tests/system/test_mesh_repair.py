"""The mesh pass repairs what a join left short, in containers with the
.deb: a pair linked over IPv6 only gets its IPv4 link from one pass, and a
half whose peer half is gone (as a join killed half-way leaves it) is
removed after join.abandon_after with one link-abandoned event, and made
again with matching keys on both sides."""

import json
import time

import pytest

from tests.integration.helpers import pings, report, wait_until
from tests.system.meshcheck import link_files, link_problems, mesh_problems

NODE0_URL = "http://198.18.0.2:8080"
BOUND = 20  # join.abandon_after for the test, seconds


def abandoned_events(node) -> list[dict]:
    out = node.run(["journalctl", "-o", "json", "--no-pager", "WGMESH_EVENT=link-abandoned"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for_mesh(nodes) -> None:
    problems = []

    def finished():
        problems[:] = mesh_problems(nodes, (4, 6))
        return not problems

    assert wait_until(finished, 30, interval=0.5), "\n".join(problems)


@pytest.mark.ids((0, 2))
def test_a_missing_family_and_an_abandoned_half_are_made_by_the_mesh_pass(mesh_lab):
    node0, node2 = mesh_lab[0], mesh_lab[2]
    node0.run(["wgmesh", "init", "0", "--public"])
    node2.run(["wgmesh", "init", "2"])
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    # Node 2's passes are this test's own (node 0, the lower ID, never connects to node 2):
    # neither its timer nor vxlan-sync (a new node in the routes) starts one.
    node2.run(["systemctl", "mask", "--now", "wgmesh-mesh.timer", "wgmesh-mesh.service"])

    # (a) Linked over IPv6 only: one pass makes the IPv4 link, and only that.
    node2.run(["wgmesh", "connect", NODE0_URL, token, "--transport", "6"])
    assert set(link_files(node2)) == {"wgm0v6"} and set(link_files(node0)) == {"wgm2v6"}
    v6_key = link_files(node2)["wgm0v6"]["public_key"]
    assert wait_until(lambda: pings(node2, "10.0.0.1"), 30), "node 0 not routed over the IPv6 link"
    out = node2.run(["wgmesh", "mesh"]).stdout
    assert out.splitlines() == ["linked with node 0: wgm0"], out
    assert link_problems([node0, node2], (4, 6)) == []
    assert link_files(node2)["wgm0v6"]["public_key"] == v6_key  # the IPv6 link was left alone
    wait_for_mesh([node0, node2])
    assert "nothing to do" in node2.run(["wgmesh", "mesh"]).stdout

    # (b) Node 0 loses its half of the IPv4 link (by hand, no /disconnect), and
    # node 2's half forgets it ever handshook (its device restarted, no marker):
    # a half whose peer half does not exist, as an interrupted join leaves it.
    node2.run(["wgmesh", "set", "join.abandon_after", str(BOUND)])
    old_key = link_files(node2)["wgm0"]["public_key"]
    node0.run("systemctl stop wgmesh-link@wgm2.service && rm /etc/wgmesh/links/wgm2.*")
    node2.run("rm -f /var/lib/wgmesh/established/wgm0 && systemctl restart wgmesh-link@wgm0.service"
              " && touch /etc/wgmesh/links/wgm0.toml")
    written = time.monotonic()
    # Younger than the bound: a pass keeps it (a join may still be finishing it).
    assert "nothing to do" in node2.run(["wgmesh", "mesh"]).stdout
    assert link_files(node2)["wgm0"]["public_key"] == old_key and abandoned_events(node2) == []

    node2.run(["systemctl", "unmask", "wgmesh-mesh.timer", "wgmesh-mesh.service"])
    node2.run(["systemctl", "start", "wgmesh-mesh.timer"])
    assert wait_until(lambda: link_files(node2).get("wgm0", {}).get("public_key") not in (None, old_key),
                      BOUND + 40), "the abandoned half was not made again"
    report(f"abandoned IPv4 half (bound {BOUND} s) removed and made again "
           f"{time.monotonic() - written:.1f} s after its file was written")
    wait_for_mesh([node0, node2])
    assert link_problems([node0, node2], (4, 6)) == []
    for _ in range(2):  # two more passes: nothing more is abandoned
        node2.run(["systemctl", "start", "wgmesh-mesh.service"], timeout=120)
    events = abandoned_events(node2)
    assert len(events) == 1, events
    assert events[0]["WGMESH_LINK"] == "wgm0" and events[0]["WGMESH_PEER"] == "0"
    assert int(events[0]["WGMESH_AGE"]) > BOUND
    assert abandoned_events(node0) == []  # node 0 had no half to abandon
