"""How long a new link's routes wait for bird after its adjacency is Full.

Three netns nodes with real bird, each running the config wgmesh renders
for it: node 0 and node 4 linked and settled, then, trial after trial, a
link between node 0 and node 2 made the way wgmesh makes one (interface
with its /31, /127 and derived link-local, then bird reconfigured; the
listener's side first, the dialer's 2 s later) and torn down again. Per
trial and per OSPF version: Full on both sides -> both sides route to the
other's loopback, and -> node 4 routes to node 2's loopback over node 0.
Links are veth pairs, not WireGuard: bird sees the same interface and
addresses either way (`type ptp` is configured, not detected).

    .venv/bin/python -m tests.bench.lsa_interval [--trials 5] [--variant NAME]

--variant today runs the config as rendered before issue 11's LSA change
(the loopback as lo's stub, no stubnets), for a before/after in one run
of the same code; --retransmit N rewrites the OSPF retransmit interval.
"""

import argparse
import ipaddress
import json
import re
import statistics
import sys
import time
from pathlib import Path

from tests.bench.timeline import ROUTE_WATCH, ospf_watch
from tests.lab.host import ip
from tests.lab.lab import Lab
from wgmesh_common import bird
from wgmesh_common.addressing import MeshPlan, link_local6
from wgmesh_common.netlink import MESH_TABLE

PLAN = MeshPlan.default()
LISTENER, DIALER, THIRD = 0, 2, 4
CTL = "/run/bird.ctl"
POLL = 0.1
OSPF_WATCH = ospf_watch(CTL, POLL)
STUBNETS = re.compile(r"\t\tstubnet [^\n]*\n")


def variant(text: str, name: str, debug: bool = False, retransmit: int | None = None) -> str:
    """The rendered config as the experiment wants it (see --variant)."""
    if retransmit:
        text = re.sub(r"retransmit \d+;", f"retransmit {retransmit};", text)
    if debug:
        text = re.sub(r"(protocol ospf v[23] \w+ \{\n)", r"\1\tdebug { events };\n", text)
    if name == "rendered":
        return text
    v2, v3 = text.split("protocol ospf v3", 1)
    if name == "today":
        # Before: the loopback announced as the stub of lo's interface.
        loopback = re.search(r"stubnet ([0-9.]+)/32 ", v2).group(1)
        lo_net = ipaddress.ip_interface(f"{loopback}/30").network
        v2 = STUBNETS.sub("", v2).replace("\tarea 0 {\n", f'\tarea 0 {{\n\t\tinterface "lo" {lo_net} {{ stub yes; }};\n')
    return v2 + "protocol ospf v3" + v3


def link_name(peer: int) -> str:
    return f"wgm{peer}"


def link_nets(listener: int, offset: int):
    addresses = PLAN.link_addresses(listener, offset)
    return (ipaddress.IPv4Network((addresses.listener4, 31)), ipaddress.IPv6Network((addresses.listener6, 127)))


class Mesh:
    def __init__(self, lab, variant_name: str, debug: bool = False, retransmit: int | None = None):
        self.lab = lab
        self.variant = variant_name
        self.debug = debug
        self.retransmit = retransmit
        self.interfaces = {node_id: {} for node_id in (LISTENER, DIALER, THIRD)}
        self.logs = {}

    def start(self) -> None:
        for node_id in self.interfaces:
            node = self.lab[node_id]
            node.run(["ip", "addr", "add", f"{PLAN.loopback4(node_id)}/30", "dev", "lo"])
            node.run(["ip", "-6", "addr", "add", f"{PLAN.loopback6(node_id)}/128", "dev", "lo"])
            node.run(["ip", "-6", "addr", "add", bird.LOOPBACK_LINK_LOCAL, "dev", "lo"])
            node.run(["ip", "link", "set", "lo", "up"])
            self.write_config(node_id)
            node.run(["bird", "-p", "-c", "/run/bird.conf"])
            node.popen(["bird", "-f", "-c", "/run/bird.conf", "-s", CTL],
                       stdout=open(node.host_path("/run/bird.log"), "w"), stderr=open(node.host_path("/run/bird.err"), "w"))  # noqa: SIM115
            routes = node.host_path("/run/routes.log")
            ospf = node.host_path("/run/ospf.log")
            node.popen(["bash", "-c", ROUTE_WATCH], stdout=open(routes, "w"))  # noqa: SIM115
            node.popen(["bash", "-c", OSPF_WATCH], stdout=open(ospf, "w"))  # noqa: SIM115
            self.logs[node_id] = (routes, ospf)

    def write_config(self, node_id: int) -> None:
        text = bird.render(PLAN, node_id, list(self.interfaces[node_id].values()), kernel_table=MESH_TABLE)
        self.lab[node_id].host_path("/run/bird.conf").write_text(variant(text, self.variant, self.debug, self.retransmit))

    def configure(self, node_id: int) -> None:
        self.write_config(node_id)
        out = self.lab[node_id].run(["birdc", "-s", CTL, "configure"]).stdout
        assert "Reconfigured" in out, out

    def make_half(self, node_id: int, peer: int, net4, net6, index: int) -> None:
        node, name = self.lab[node_id], link_name(peer)
        address4 = net4[index]
        node.run(["ip", "addr", "add", f"{address4}/31", "dev", name])
        node.run(["ip", "-6", "addr", "add", f"{net6[index]}/127", "dev", name, "nodad"])
        node.run(["ip", "-6", "addr", "add", f"{link_local6(address4)}/64", "dev", name, "nodad"])
        self.interfaces[node_id][name] = bird.OspfInterface(name, 100, net4=str(net4), net6=str(net6))
        self.configure(node_id)

    def link(self, listener: int, dialer: int, offset: int, gap: float) -> None:
        net4, net6 = link_nets(listener, offset)
        ip(self.lab[listener].netns, "link", "add", link_name(dialer), "type", "veth",
           "peer", "name", link_name(listener), "netns", self.lab[dialer].netns)
        # Like a WireGuard interface: no link-local address of its own, and
        # a carrier from the start (a veth without one would enter OSPF as
        # Loopback and change the LSAs once more when its peer comes up).
        for node_id, name in ((listener, link_name(dialer)), (dialer, link_name(listener))):
            self.lab[node_id].run(["ip", "link", "set", name, "addrgenmode", "none"])
            self.lab[node_id].run(["ip", "link", "set", name, "up"])
        self.make_half(listener, dialer, net4, net6, 0)
        time.sleep(gap)
        self.make_half(dialer, listener, net4, net6, 1)

    def unlink(self, a: int, b: int) -> None:
        for node_id, peer in ((a, b), (b, a)):
            self.interfaces[node_id].pop(link_name(peer))
            self.configure(node_id)
        self.lab[a].run(["ip", "link", "del", link_name(b)])

    def routes(self, node_id: int) -> dict[int, str]:
        """IP version -> `ip route` of the mesh table now."""
        node = self.lab[node_id]
        return {v: node.run(["ip", f"-{v}", "route", "show", "table", str(MESH_TABLE)], check=False).stdout for v in (4, 6)}

    def reaches(self, node_id: int, other: int) -> bool:
        routes = self.routes(node_id)
        return (f"{PLAN.loopback4(other)} " in routes[4] or f"{PLAN.loopback4(other)}/32" in routes[4]) \
            and str(PLAN.loopback6(other)) in routes[6]

    def lsdb(self, node_id: int) -> str:
        node = self.lab[node_id]
        return "".join(node.run(["birdc", "-s", CTL, "show", "ospf", "lsadb", protocol]).stdout
                       for protocol in ("wgmesh4", "wgmesh6"))


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def first_full(path, name: str, version: int, after: float) -> float | None:
    now = None
    for line in path.read_text().splitlines():
        if line.startswith("@"):
            now = float(line[1:])
            continue
        words = line.split()
        if now is not None and now >= after and len(words) >= 4 and words[2] == name and words[1].startswith("Full") \
                and (":" in words[3]) == (version == 6):
            return now
    return None


def first_route(path, destination: str, after: float) -> float | None:
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) > 2 and words[1] != "Deleted" and float(words[0]) >= after \
                and words[1] in (destination, destination.split("/")[0]):
            return float(words[0])
    return None


def trial(mesh: Mesh, gap: float) -> dict:
    start = time.time()
    mesh.link(LISTENER, DIALER, 6, gap)
    done = wait_for(lambda: mesh.reaches(LISTENER, DIALER) and mesh.reaches(DIALER, LISTENER)
                    and mesh.reaches(THIRD, DIALER), 30)
    result = {"converged": done}
    for version in (4, 6):
        fulls = [first_full(mesh.logs[LISTENER][1], link_name(DIALER), version, start),
                 first_full(mesh.logs[DIALER][1], link_name(LISTENER), version, start)]
        loop = (lambda n: f"{PLAN.loopback4(n)}/32") if version == 4 else (lambda n: f"{PLAN.loopback6(n)}")
        routes = [first_route(mesh.logs[LISTENER][0], loop(DIALER), start),
                  first_route(mesh.logs[DIALER][0], loop(LISTENER), start)]
        third = first_route(mesh.logs[THIRD][0], loop(DIALER), start)
        if None in fulls or None in routes:
            result[f"v{version}"] = None
            continue
        full = max(fulls)
        result[f"v{version}"] = {"full_after_start": round(full - start, 2),
                                 "full_to_routes": round(max(routes) - full, 2),
                                 "full_to_third": round(third - full, 2) if third else None}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--variant", default="rendered", choices=("rendered", "today"))
    parser.add_argument("--retransmit", type=int, help="OSPF retransmit interval (s) instead of the rendered one")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between the two halves of a link")
    parser.add_argument("--lsdb", action="store_true", help="print node 2's LSA database before and after a link")
    parser.add_argument("--debug", action="store_true",
                        help="bird's OSPF events into each node's log, copied to /tmp/lsa-interval-N.log")
    args = parser.parse_args()
    results = []
    with Lab(f"lsa{int(time.time()) % 10000}", kind="netns", ids=(LISTENER, DIALER, THIRD)) as lab:
        mesh = Mesh(lab, args.variant, args.debug, args.retransmit)
        mesh.start()
        mesh.link(LISTENER, THIRD, 4, 0)
        assert wait_for(lambda: mesh.reaches(THIRD, LISTENER), 30), "node 0 and node 4 never routed"
        for number in range(args.trials):
            time.sleep(7)  # past MinLSInterval since the last change of every LSA
            if args.lsdb and number == 0:
                print(mesh.lsdb(DIALER))
            results.append(trial(mesh, args.gap))
            print(json.dumps(results[-1]), flush=True)
            if args.lsdb and number == 0:
                print(mesh.lsdb(DIALER))
            mesh.unlink(LISTENER, DIALER)
            wait_for(lambda: not mesh.reaches(THIRD, DIALER), 30)
        if args.debug:
            for node_id in mesh.interfaces:
                text = lab[node_id].host_path("/run/bird.err").read_text()
                Path(f"/tmp/lsa-interval-{node_id}.log").write_text(text)
    for version in ("v4", "v6"):
        for key in ("full_to_routes", "full_to_third"):
            values = [r[version][key] for r in results if r.get(version) and r[version][key] is not None]
            if values:
                print(f"{args.variant} {version} {key}: median {statistics.median(values):.2f} s, "
                      f"min {min(values):.2f}, max {max(values):.2f} ({len(values)} links)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
