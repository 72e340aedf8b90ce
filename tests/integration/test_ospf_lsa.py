"""A new link's interface entering OSPF leaves the router LSA alone.

bird originates a router LSA at most every 5 s. When a link's interface
put its /31 into the OSPFv2 router LSA, the LSA that names the new
neighbour, a second later when the adjacency was Full, waited out the rest
of those 5 s, and so did the routes over the link. Two real birds in the
lab's namespaces, each running the config wgmesh renders for it, and a
veth pair made like a WireGuard link (its /31, /127 and derived link-local,
no address of its own, a carrier from the start): one side's interface
enters OSPF and its router LSA stays the same instance; when the other side
follows, the adjacency's change is the only one, and each loopback is
still reached over the link."""

import re
import time

import pytest

from tests.lab.host import ip
from wgmesh_common import bird
from wgmesh_common.addressing import MeshPlan, link_local6
from wgmesh_common.netlink import MESH_TABLE

from .helpers import start_bird, wait_until

PLAN = MeshPlan.default()
LISTENER, DIALER = 0, 2
CTL = "/run/bird.ctl"


def birdc(node, *command: str) -> str:
    return node.run(["birdc", "-s", CTL, *command], check=False).stdout


def own_router_lsa(node) -> tuple[str, int, str] | None:
    """(sequence number, age, checksum) of the node's own OSPFv2 router
    LSA: a new instance changes the first, a new body the last too."""
    rows = re.findall(r"^\s*0001\s+\S+\s+\S+\s+([0-9a-f]{8})\s+(\d+)\s+([0-9a-f]{4})\s*$",
                      birdc(node, "show", "ospf", "lsadb", "type", "1", "self", "wgmesh4"), re.MULTILINE)
    return (rows[0][0], int(rows[0][1]), rows[0][2]) if len(rows) == 1 else None


def instance(lsa: tuple[str, int, str] | None) -> tuple[str, str] | None:
    return (lsa[0], lsa[2]) if lsa else None


def router_entry(node, router_id) -> list[str]:
    """What `show ospf state` reads from one router's LSAs (OSPFv2): its
    `router ...` and `stubnet ...` lines."""
    text = birdc(node, "show", "ospf", "state", "all", "wgmesh4")
    block = re.search(rf"^\s*router {re.escape(str(router_id))}\n(.*?)(?=^\s*router [\d.]+$|^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    return [line.strip() for line in block.group(1).splitlines() if line.strip()] if block else []


def mesh_routes(node, family: int) -> str:
    return node.run(["ip", f"-{family}", "route", "show", "table", str(MESH_TABLE)], check=False).stdout


def give_loopback(node, node_id: int) -> None:
    node.run(["ip", "addr", "add", f"{PLAN.loopback4(node_id)}/30", "dev", "lo"])
    node.run(["ip", "-6", "addr", "add", f"{PLAN.loopback6(node_id)}/128", "dev", "lo"])
    node.run(["ip", "-6", "addr", "add", bird.LOOPBACK_LINK_LOCAL, "dev", "lo"])
    node.run(["ip", "link", "set", "lo", "up"])


def neighbour_full(node) -> bool:
    rows = bird.parse_ospf_neighbors(birdc(node, "show", "ospf", "neighbors", "wgmesh4"))
    return [row["state"] for row in rows] == ["Full"]


@pytest.mark.ids((LISTENER, DIALER))
def test_a_links_interface_entering_ospf_leaves_the_router_lsa_alone(netns_lab):
    listener, dialer = netns_lab[LISTENER], netns_lab[DIALER]
    addresses = PLAN.link_addresses(LISTENER, 4)
    ends = {LISTENER: (listener, f"wgm{DIALER}", addresses.listener4, addresses.listener6),
            DIALER: (dialer, f"wgm{LISTENER}", addresses.dialer4, addresses.dialer6)}
    net4, net6 = f"{addresses.listener4}/31", f"{addresses.listener6}/127"
    for node_id, (node, _, _, _) in ends.items():
        give_loopback(node, node_id)
        start_bird(node, bird.render(PLAN, node_id, [], kernel_table=MESH_TABLE))
    ip(listener.netns, "link", "add", ends[LISTENER][1], "type", "veth",
       "peer", "name", ends[DIALER][1], "netns", dialer.netns)
    for node, name, address4, address6 in ends.values():
        node.run(["ip", "link", "set", name, "addrgenmode", "none"])
        node.run(["ip", "addr", "add", f"{address4}/31", "dev", name])
        node.run(["ip", "-6", "addr", "add", f"{address6}/127", "dev", name, "nodad"])
        node.run(["ip", "-6", "addr", "add", f"{link_local6(address4)}/64", "dev", name, "nodad"])
        node.run(["ip", "link", "set", name, "up"])
    # Past bird's 5 s between router LSAs since its first: a change now
    # would be originated at once, not postponed past the check below.
    before = instance(wait_until(lambda: (lsa := own_router_lsa(dialer)) and lsa[1] >= 6 and lsa, 30))
    assert before, birdc(dialer, "show", "ospf", "lsadb", "wgmesh4")
    assert router_entry(dialer, PLAN.loopback4(DIALER)) == [
        "distance 0", f"stubnet {PLAN.loopback4(DIALER)}/32 metric 0"]

    # The dialer's interface enters OSPF; its peer's bird does not speak
    # on the link yet, so nothing but the interface itself changed.
    interface = bird.OspfInterface(ends[DIALER][1], 100, net4=net4, net6=net6)
    dialer.host_path("/run/bird.conf").write_text(bird.render(PLAN, DIALER, [interface], kernel_table=MESH_TABLE))
    assert "Reconfigured" in birdc(dialer, "configure")
    assert wait_until(lambda: "PtP" in birdc(dialer, "show", "ospf", "interface", "wgmesh4"), 10)
    # bird updates its LSAs on its 1 s tick; a /31 stub would be in by now.
    time.sleep(3)
    assert instance(own_router_lsa(dialer)) == before, router_entry(dialer, PLAN.loopback4(DIALER))

    # The listener follows: the adjacency forms, and the router LSAs name it.
    interface = bird.OspfInterface(ends[LISTENER][1], 100, net4=net4, net6=net6)
    listener.host_path("/run/bird.conf").write_text(bird.render(PLAN, LISTENER, [interface], kernel_table=MESH_TABLE))
    assert "Reconfigured" in birdc(listener, "configure")
    assert wait_until(lambda: neighbour_full(dialer) and neighbour_full(listener), 30)
    assert wait_until(lambda: f"{PLAN.loopback4(LISTENER)} " in mesh_routes(dialer, 4)
                      and f"{PLAN.loopback4(DIALER)} " in mesh_routes(listener, 4), 30), \
        (mesh_routes(dialer, 4), mesh_routes(listener, 4))
    for node_id, node in ((LISTENER, listener), (DIALER, dialer)):
        other = DIALER if node_id == LISTENER else LISTENER
        # The link is in the router LSA as the adjacency only; no stub of
        # its /31 (nor any other of the mesh's interface nets).
        assert router_entry(node, PLAN.loopback4(node_id)) == [
            "distance 0", f"router {PLAN.loopback4(other)} metric 100",
            f"stubnet {PLAN.loopback4(node_id)}/32 metric 0"]
        # Each loopback is reached over the link, in both families.
        assert f"dev {ends[node_id][1]}" in next(
            line for line in mesh_routes(node, 4).splitlines() if line.startswith(f"{PLAN.loopback4(other)} "))
        assert wait_until(lambda n=node, o=other: str(PLAN.loopback6(o)) in mesh_routes(n, 6), 30)
    # The dialer's LSA changed once, for the adjacency.
    assert int(instance(own_router_lsa(dialer))[0], 16) == int(before[0], 16) + 1
