"""What the quality tests and the quality benchmark look at on a booted
node: its cost state, its route to another node, its journal events and
its OSPF neighbours."""

import json
import re
import time
import tomllib

from tests.integration.helpers import wait_until
from tests.system.meshcheck import MESH_TABLE, link_files, route_problems

# Node 0's links to node 2, and to node 4 (the detour to node 2).
DIRECT = {"wgm2", "wgm2v6"}
VIA_4 = {"wgm4", "wgm4v6"}
PAIRS = ((0, 2), (0, 4), (2, 4))


def build_triangle(mesh, settings: dict[str, str] | None = None, timeout: float = 60) -> list:
    """Nodes 0, 2 and 4 of a booted lab made a dual-stack mesh (with the
    given `wgmesh set` settings), every link measured and clean, every pair
    routed direct."""
    from tests.system.test_full_mesh import NODE0_URL, connect_at_once, init_all, wait_for_mesh

    nodes = [mesh[i] for i in (0, 2, 4)]
    token = init_all(nodes)
    for node in nodes:
        for key, value in (settings or {}).items():
            node.run(["wgmesh", "set", key, value])
    connect_at_once(nodes[1:], NODE0_URL, token)
    wait_for_mesh(nodes, (4, 6), timeout=timeout)
    settle(nodes, timeout=2 * timeout)
    return nodes


def costs(node) -> dict[str, dict]:
    path = node.host_path("/run/wgmesh/costs.toml")
    if not path.exists():
        return {}
    return tomllib.loads(path.read_text()).get("links", {})


def settled_problems(nodes) -> list[str]:
    """Every link measured, with no penalty, and every pair routed direct."""
    problems = []
    for node in nodes:
        states = costs(node)
        for name in link_files(node):
            state = states.get(name)
            if state is None or "rtt" not in state:
                problems.append(f"node {node.mesh_id}: {name} not measured yet")
            elif any(state.get(f"{p}_until") for p in ("loss", "jitter", "down")):
                problems.append(f"node {node.mesh_id}: {name} still penalised ({state['reason']})")
    return problems or route_problems(nodes)


def settle(nodes, timeout: float = 120) -> None:
    problems = []

    def done():
        problems[:] = settled_problems(nodes)
        return not problems

    assert wait_until(done, timeout, interval=1), "\n".join(problems)


def devices_to(node, peer: int) -> set[str]:
    words = node.run(["ip", "-o", "-4", "route", "show", "table", MESH_TABLE, f"10.0.{peer}.1"]).stdout.split()
    return {words[i + 1] for i, word in enumerate(words[:-1]) if word == "dev"}


def wait_route(node, peer: int, devices: set[str], timeout: float) -> float | None:
    """Seconds until node routes to peer's loopback over (only) devices."""
    started = time.monotonic()
    if wait_until(lambda: devices_to(node, peer) and devices_to(node, peer) <= devices, timeout, interval=0.25):
        return time.monotonic() - started
    return None


def events(node, name: str, since: float) -> list[dict]:
    out = node.run(["journalctl", "--no-pager", "-q", "-o", "json", f"WGMESH_EVENT={name}",
                    f"--since=@{int(since)}"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def ospf_not_full(node) -> list[str]:
    out = node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors"], check=False).stdout
    rows = [line.split() for line in out.splitlines() if re.match(r"^\d+\.\d+\.\d+\.\d+\s", line)]
    states = {row[4]: row[2] for row in rows if len(row) >= 5}
    return [f"node {node.mesh_id} {name}: {states.get(name, 'no neighbour')}" for name in link_files(node)
            if not states.get(name, "").startswith("Full")]
