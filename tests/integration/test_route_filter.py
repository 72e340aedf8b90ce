"""A hostile member's announcements never reach another node's kernel.

Three real birds in the lab's namespaces, each running the config wgmesh
renders for it, linked in a triangle by veth pairs named like wgmesh's
links: node 0 (the victim), node 2 (hostile: its config carries extra
stubnets and static routes exported into OSPF) and node 4 (an honest
node). The victim's mesh table must hold the honest routes and none of
the hostile ones."""

import ipaddress

import pytest

from tests.lab.host import ip
from wgmesh_common import bird, meshview, netlink
from wgmesh_common.addressing import MeshPlan
from wgmesh_common.netlink import MESH_TABLE

from .helpers import report, start_bird, wait_until

PLAN = MeshPlan.default()
VICTIM, HOSTILE, HONEST = 0, 2, 4
# (server, client): the server's block holds the link's nets.
LINKS = [(0, 2), (0, 4), (2, 4)]

# What the hostile node announces as stubnets (intra-area routes, the kind
# a filter on the route's source alone lets through), at cost 1 so that each
# would beat an honest route to the same prefix.
HOSTILE_STUBNETS4 = [
    "0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1",   # all internet and underlay traffic
    "198.18.4.2/32", "198.18.0.0/16",          # node 4's underlay endpoint: WireGuard's own packets
    "10.0.0.0/16", "10.0.4.0/23",              # aggregates over the mesh and over node 4's block
    "10.0.4.1/32", "10.0.4.0/31",              # more specific than node 4's loopback /30
    "10.0.4.0/30",                             # node 4's exact loopback net, from the wrong router
    "10.0.0.1/32",                             # the victim's own loopback
    "10.0.100.0/30",                           # a node that does not exist ("wgmesh mesh" would chase it)
    "10.0.251.4/32",                           # node 4's overlay address
    "10.0.4.8/29",                             # inside node 4's block, at no link's length
    "10.0.4.10/31",                            # a link address of node 4's no link has (yet)
]
HOSTILE_STUBNETS6 = [
    "::/0", "::/1", "8000::/1",
    "2001:db8:4::2/128",                       # node 4's underlay endpoint
    "fd10::/48", "fd10:0:0:4::/64",
    "fd10:0:0:4::/126",                        # covers node 4's loopback
    "fd10::1/128",                             # the victim's loopback
    "fd10:0:0:64::1/128",                      # node 100, which does not exist
    "fd10:0:0:fb::4/128",                      # node 4's overlay address
]
# Exported into OSPF as externals.
HOSTILE_STATIC4 = ["192.0.2.0/24", "10.0.4.1/32"]
HOSTILE_STATIC6 = ["2001:db8:ffff::/48", "fd10:0:0:4::1/128"]


def link_name(peer: int) -> str:
    return f"wgm{peer}"


def link_nets(server: int, client: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    offset = 4 + 2 * [link for link in LINKS if link[0] == server].index((server, client))
    addresses = PLAN.link_addresses(server, offset)
    return (ipaddress.IPv4Network((addresses.listener4, 31)), ipaddress.IPv6Network((addresses.listener6, 127)))


def wire(lab) -> dict[int, list[bird.OspfInterface]]:
    """The triangle of veth links and each node's loopback; bird's interfaces per node."""
    interfaces = {node_id: [] for node_id in (VICTIM, HOSTILE, HONEST)}
    for node_id in interfaces:
        node = lab[node_id]
        node.run(["ip", "addr", "add", f"{PLAN.loopback4(node_id)}/30", "dev", "lo"])
        node.run(["ip", "-6", "addr", "add", f"{PLAN.loopback6(node_id)}/128", "dev", "lo"])
        node.run(["ip", "-6", "addr", "add", bird.LOOPBACK_LINK_LOCAL, "dev", "lo"])
        node.run(["ip", "link", "set", "lo", "up"])
    for server, client in LINKS:
        net4, net6 = link_nets(server, client)
        # From the host: a node's private /run hides the named namespaces.
        ip(lab[server].netns, "link", "add", link_name(client), "type", "veth",
           "peer", "name", link_name(server), "netns", lab[client].netns)
        for node_id, peer, index in ((server, client, 0), (client, server, 1)):
            node, name = lab[node_id], link_name(peer)
            node.run(["ip", "addr", "add", f"{net4[index]}/31", "dev", name])
            node.run(["ip", "-6", "addr", "add", f"{net6[index]}/127", "dev", name, "nodad"])
            node.run(["ip", "link", "set", name, "up"])
            interfaces[node_id].append(bird.OspfInterface(name, 100, net4=str(net4), net6=str(net6)))
    return interfaces


def hostile_config(text: str) -> str:
    """The hostile node's rendered config with its extra announcements."""
    stub4 = "".join(f"\t\tstubnet {prefix} {{ cost 1; }};\n" for prefix in HOSTILE_STUBNETS4)
    stub6 = "".join(f"\t\tstubnet {prefix} {{ cost 1; }};\n" for prefix in HOSTILE_STUBNETS6)
    lo4 = f"\t\tstubnet {PLAN.loopback4(HOSTILE)}/32 {{ cost 0; }};\n"
    lo6 = '\t\tinterface "lo" { stub yes; };\n'
    assert text.count(lo4) == 1 and text.count(lo6) == 1
    text = text.replace(lo4, lo4 + stub4).replace(lo6, lo6 + stub6)
    text = text.replace("ipv4 { import all; export none; };", "ipv4 { import all; export where source = RTS_STATIC; };")
    text = text.replace("ipv6 { import all; export none; };", "ipv6 { import all; export where source = RTS_STATIC; };")
    statics = "protocol static hostile4 {\n\tipv4;\n" + "".join(
        f"\troute {prefix} via \"lo\";\n" for prefix in HOSTILE_STATIC4) + "}\n"
    statics += "protocol static hostile6 {\n\tipv6;\n" + "".join(
        f"\troute {prefix} via \"lo\";\n" for prefix in HOSTILE_STATIC6) + "}\n"
    return text + statics


def table(node, family: int) -> dict[str, str]:
    """The node's mesh table: prefix -> the whole route line."""
    out = node.run(["ip", f"-{family}", "route", "show", "table", str(MESH_TABLE)]).stdout
    routes = {}
    for line in out.splitlines():
        if line.startswith((" ", "\t")):  # a multipath route's next hops
            routes[list(routes)[-1]] += " " + line.strip()
            continue
        prefix = line.split()[0]
        if prefix == "default":
            prefix = "0.0.0.0/0" if family == 4 else "::/0"
        elif "/" not in prefix:
            prefix += "/32" if family == 4 else "/128"
        routes[str(ipaddress.ip_network(prefix))] = line
    return routes


def ospf_routes(node) -> str:
    return node.run(["birdc", "-s", "/run/bird.ctl", "show", "route"], check=False).stdout


@pytest.mark.ids((VICTIM, HOSTILE, HONEST))
def test_a_hostile_members_announcements_never_reach_the_kernel(netns_lab):
    interfaces = wire(netns_lab)
    for node_id, node_interfaces in interfaces.items():
        text = bird.render(PLAN, node_id, node_interfaces, kernel_table=MESH_TABLE)
        start_bird(netns_lab[node_id], hostile_config(text) if node_id == HOSTILE else text)
    victim = netns_lab[VICTIM]

    # The hostile announcements reached the victim's bird: proof that the
    # kernel's table below is the filter's doing, not an unformed adjacency.
    assert wait_until(lambda: all(prefix in ospf_routes(victim) for prefix in ("0.0.0.0/1", "10.0.100.0/30", "8000::/1")),
                      60), ospf_routes(victim)
    # Exactly the honest routes: every node's loopback over the link to it,
    # the one IPv6 link net that is not the victim's own (over both links),
    # and nothing the hostile node made up. (OSPFv2 announces no link nets,
    # nor the victim's own loopback to itself: see bird.render.)
    honest4 = {f"{PLAN.loopback4(HOSTILE)}/32": "dev wgm2", f"{PLAN.loopback4(HONEST)}/32": "dev wgm4"}
    honest6 = {f"{PLAN.loopback6(VICTIM)}/128": "dev lo", f"{PLAN.loopback6(HOSTILE)}/128": "dev wgm2",
               f"{PLAN.loopback6(HONEST)}/128": "dev wgm4", str(link_nets(2, 4)[1]): "nexthop"}
    settled = wait_until(lambda: (set(table(victim, 4)), set(table(victim, 6))) == (set(honest4), set(honest6)), 30)
    routes4, routes6 = table(victim, 4), table(victim, 6)
    report(f"victim's mesh table: {sorted(routes4)} {sorted(routes6)}")
    assert settled, (sorted(set(routes4) ^ set(honest4)), sorted(set(routes6) ^ set(honest6)))
    for prefix, via in {**honest4, **honest6}.items():
        line = (routes6 if ":" in prefix else routes4)[prefix]
        assert via in line, line
    assert "wgm2" not in routes4[f"{PLAN.loopback4(HONEST)}/32"] + routes6[f"{PLAN.loopback6(HONEST)}/128"]

    # What the mesh pass and the overlay would make of this table: the real
    # nodes, never node 100.
    reachable = meshview.reachable_nodes(netlink_routes(victim, 4), PLAN, VICTIM)
    reachable |= meshview.reachable_nodes(netlink_routes(victim, 6), PLAN, VICTIM, family=6)
    assert reachable == {HOSTILE, HONEST}


def netlink_routes(node, family: int) -> list[netlink.Route]:
    """The victim's mesh table as wgmesh reads it (pyroute2 inside its netns)."""
    import json
    import sys

    script = ("import json, sys; from wgmesh_common import netlink; "
              "print(json.dumps([[str(r.destination), r.interface, r.protocol] "
              f"for r in netlink.routes({family}, netlink.MESH_TABLE)]))")
    rows = json.loads(node.run([sys.executable, "-c", script]).stdout)
    return [netlink.Route(ipaddress.ip_network(dst), None, interface, protocol) for dst, interface, protocol in rows]
