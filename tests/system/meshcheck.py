"""What "a full mesh" means, checked from outside the nodes: shared by the
system tests, the convergence benchmark and the demo. Finished is: one link
per pair and family with matching keys on both sides, every link up with
OSPF Full, every node routing to each linked node over the direct link,
and every node reaching every other's IPv4 and IPv6 loopback."""

import ipaddress
import json
import threading
import time
import tomllib

LINK_FAMILIES = {"4": (4,), "6": (6,), "auto": (4, 6)}
# The kernel routing table wgmesh's bird writes to (netlink.MESH_TABLE).
MESH_TABLE = "30573"


def loopback4(node_id: int) -> str:
    return f"10.0.{node_id}.1"


def loopback6(node_id: int) -> str:
    # The default fd10::/48 gives node N the /64 at index N.
    return str(ipaddress.IPv6Network("fd10::/48").network_address + (node_id << 64) + 1)


def overlay_addresses(node_id: int) -> dict[str, str]:
    """Node node_id's address on each VXLAN device, as the README's
    "Using it" states the rule: host part N, node 0 host part 1."""
    host = node_id or 1
    return {"wgmvx4": f"10.0.251.{host}", "wgmvx6": f"fd10:0:0:fb::{host:x}"}


def overlay_problems(nodes) -> list[str]:
    """Pairs of nodes that do not ping each other over both VXLAN overlays,
    or whose reply comes from a node other than the one asked (the reply's
    source MAC, as the asking node learned it, is the asked node's)."""
    macs = {node.mesh_id: {device: node.run(["cat", f"/sys/class/net/{device}/address"]).stdout.strip()
                           for device in ("wgmvx4", "wgmvx6")} for node in nodes}

    def check(node):
        found = []
        for other in nodes:
            if other is node:
                continue
            for device, address in overlay_addresses(other.mesh_id).items():
                script = (f"ping -c1 -W2 -I {device} {address} >/dev/null 2>&1 || ping -c1 -W2 -I {device} {address}"
                          f" >/dev/null 2>&1 && ip neigh show {address} dev {device}")
                answer = node.run(script, check=False)
                words = answer.stdout.split()
                mac = words[words.index("lladdr") + 1] if "lladdr" in words else None
                if answer.returncode != 0:
                    found.append(f"node {node.mesh_id} does not ping node {other.mesh_id} at {address} over {device}")
                elif mac != macs[other.mesh_id][device]:
                    found.append(f"node {node.mesh_id}: {address} over {device} answered by {mac}, "
                                 f"not node {other.mesh_id} ({macs[other.mesh_id][device]})")
        return found

    return [p for found in in_parallel(check, nodes) for p in found]


def link_name(peer_id: int, family: int) -> str:
    return f"wgm{peer_id}" if family == 4 else f"wgm{peer_id}v6"


def link_files(node) -> dict[str, dict]:
    """The node's link files, by name (read from the host side)."""
    found = {}
    for path in sorted((node.files_dir / "links").glob("*.toml")):
        try:
            found[path.stem] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            found[path.stem] = {}  # being written right now: not a whole link yet
    return found


def unreachable(node, addresses: list[str]) -> list[str]:
    """The addresses that do not answer one ping from node (pinged at once)."""
    if not addresses:
        return []
    script = " ".join(f"(ping -c1 -W1 {a} >/dev/null 2>&1 || echo {a}) &" for a in addresses) + " wait"
    return node.run(script, check=False).stdout.split()


def in_parallel(function, items) -> list:
    """function(item) for every item at once; results in order, first error raised."""
    results, errors = [None] * len(items), []

    def call(index, item):
        try:
            results[index] = function(item)
        except BaseException as error:  # noqa: BLE001 - re-raised below, after every thread ended
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i, item)) for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def link_problems(nodes, families=(4, 6), clients=None) -> list[str]:
    """Why the links are not exactly one per pair of nodes and family, each
    side's keys matching the other's (no half-made or crossed links).
    clients: {client_id: {ids it was told to join}}."""
    clients = clients or {}
    problems = []
    files = {node.mesh_id: link_files(node) for node in nodes}
    ids = set(files)
    for node_id, links in files.items():
        if node_id in clients:
            peers = clients[node_id]
        else:
            peers = {p for p in ids - {node_id} if p not in clients}
            peers |= {c for c, told in clients.items() if node_id in told}
        wanted = {link_name(p, f) for p in peers for f in families}
        if set(links) != wanted:
            missing, extra = sorted(wanted - set(links)), sorted(set(links) - wanted)
            problems.append(f"node {node_id}: missing links {missing}, unexpected links {extra}")
            continue
        for name, link in links.items():
            other = files.get(link.get("peer_id"), {}).get(link_name(node_id, link.get("family")))
            if not other or other.get("public_key") != link.get("peer_public_key") \
                    or other.get("peer_public_key") != link.get("public_key"):
                problems.append(f"node {node_id}: {name} does not match its peer's side")
    return problems


def state_problems(node, ospf: bool = True) -> list[str]:
    """Links of node whose interface or handshake (and, with ospf, OSPF
    adjacency) is not up."""
    links = json.loads(node.run(["wgmesh", "status", "--json"]).stdout)["links"]
    return [f"node {node.mesh_id}: {link['name']} is {link['state']}, OSPF {link['ospf']}"
            for link in links if link["state"] != "up" or (ospf and link["ospf"] != "Full")]


# What the benchmarks check instead of `wgmesh status`, whose Python
# start-up on every node every half second took a core of a 2-core
# machine away from the very build being timed (tests/bench/cpu_budget.py).
QUICK_STATE = ("ls /etc/wgmesh/links | sed -n 's/[.]toml$//p'; echo @; wg show all latest-handshakes; echo @; "
               "birdc -s /run/wgmesh/bird.ctl show ospf neighbors wgmesh4 | awk '/wgm[0-9]/ {print $5, $3}'")


def quick_state_problems(node, ospf: bool = True) -> list[str]:
    """state_problems, read with wg and birdc: every link has had a
    handshake in the last 180 s (and, with ospf, a Full OSPFv2 neighbour)."""
    links, handshakes, neighbours = (part.split("\n") for part in
                                     node.run(QUICK_STATE, check=False).stdout.split("@\n"))
    now = time.time()
    fresh = {words[0] for words in map(str.split, handshakes)
             if len(words) == 3 and words[2].isdigit() and 0 < now - int(words[2]) < 180}
    full = {words[0] for words in map(str.split, neighbours) if len(words) == 2 and words[1].startswith("Full")}
    return [f"node {node.mesh_id}: {name} has no fresh handshake" if name not in fresh
            else f"node {node.mesh_id}: {name} has no Full OSPF neighbour"
            for name in filter(None, links) if name not in fresh or (ospf and name not in full)]


def reach_problems(nodes, targets=None) -> list[str]:
    """Nodes that do not reach another node's IPv4 and IPv6 loopback."""
    targets = targets if targets is not None else nodes

    def check(node):
        addresses = [a for t in targets if t is not node for a in (loopback4(t.mesh_id), loopback6(t.mesh_id))]
        return [f"node {node.mesh_id} does not reach {a}" for a in unreachable(node, addresses)]

    return [p for found in in_parallel(check, nodes) for p in found]


def route_problems(nodes, detours=()) -> list[str]:
    """Pairs of linked nodes whose IPv4 route to each other does not take
    their direct link yet (OSPF has not settled: a direct clean link costs
    less than any path through a third node). Pairs in detours (an impaired
    underlay makes their direct link dearer) are not checked."""
    skipped = {frozenset(pair) for pair in detours}

    def check(node):
        peers = {int(name.removeprefix("wgm").removesuffix("v6")) for name in link_files(node)}
        peers &= {other.mesh_id for other in nodes}
        peers = {p for p in peers if frozenset((node.mesh_id, p)) not in skipped}
        if not peers:
            return []
        script = "; ".join(f'echo "{p} $(ip -o -4 route show table {MESH_TABLE} {loopback4(p)} | tr "\\n" " ")"' for p in sorted(peers))
        found = []
        for line in node.run(script, check=False).stdout.splitlines():
            peer, _, route = line.partition(" ")
            words = route.split()
            devices = {words[i + 1] for i, word in enumerate(words[:-1]) if word == "dev"}
            if not devices or not devices <= {f"wgm{peer}", f"wgm{peer}v6"}:
                found.append(f"node {node.mesh_id} routes to node {peer} via {sorted(devices) or 'nothing'}")
        return found

    return [p for found in in_parallel(check, nodes) for p in found]


def reachable_problems(nodes, families=(4, 6), states=state_problems) -> list[str]:
    """What keeps nodes from the issue-11 measure of a built mesh: every pair
    has its links, every link is up with a handshake, every node answers on
    its loopbacks (by whatever path OSPF has for now); [] when done."""
    problems = link_problems(nodes, families)
    if problems:
        return problems
    problems = [p for found in in_parallel(lambda n: states(n, ospf=False), nodes) for p in found]
    return problems or reach_problems(nodes)


def mesh_problems(nodes, families=(4, 6), clients=None, detours=(), states=state_problems) -> list[str]:
    """Everything that keeps nodes from being a finished mesh; [] when done.
    states: how a node's links are checked (state_problems, through
    `wgmesh status`; quick_state_problems for the benchmarks)."""
    problems = link_problems(nodes, families, clients)
    if problems:
        return problems
    problems = [p for found in in_parallel(states, nodes) for p in found]
    return problems or route_problems(nodes, detours) or reach_problems(nodes)
