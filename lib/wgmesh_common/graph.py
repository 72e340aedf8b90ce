"""The mesh as a graph, from OSPF's own database, drawn as Graphviz DOT.

bird's `show ospf state` lists every router and the routers each one has a
link to, with the cost, as seen by every node alike: the whole mesh, not
just this node's links. This node's own links that OSPF does not see (down)
are added from the link files, drawn dashed red; its measured ones carry
their RTT, drawn orange while a penalty holds them and red while down.
"""

import re
from dataclasses import dataclass, field

ROUTER_RE = re.compile(r"^\s*router (\d+\.\d+\.\d+\.\d+)\s*$")
EDGE_RE = re.compile(r"^\s*router (\d+\.\d+\.\d+\.\d+) metric (\d+)")


@dataclass
class MeshGraph:
    nodes: dict[str, dict] = field(default_factory=dict)  # router id -> attributes
    # (from, to) -> the cost of each link between them (parallel links: one
    # per underlay family)
    edges: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    down: set[tuple[str, str]] = field(default_factory=set)
    # This node's measurements, per peer router: the RTT (ms) of each link
    # to it, and the worst condition among them ("ok", "penalised", "down").
    measured: dict[str, tuple[list[float], str]] = field(default_factory=dict)


CONDITION_ORDER = ("ok", "penalised", "down")
CONDITION_COLOURS = {"penalised": "darkorange", "down": "red"}


def add_measurement(graph: MeshGraph, peer: str, rtt: float | None, condition: str) -> None:
    rtts, worst = graph.measured.get(peer, ([], "ok"))
    if rtt is not None:
        rtts = rtts + [rtt]
    if CONDITION_ORDER.index(condition) > CONDITION_ORDER.index(worst):
        worst = condition
    graph.measured[peer] = (rtts, worst)


def parse_ospf_state(text: str) -> MeshGraph:
    graph = MeshGraph()
    current = None
    for line in text.splitlines():
        match = ROUTER_RE.match(line)
        if match:
            current = match.group(1)
            graph.nodes.setdefault(current, {})
            continue
        match = EDGE_RE.match(line)
        if match and current:
            graph.nodes.setdefault(match.group(1), {})
            graph.edges.setdefault((current, match.group(1)), []).append(int(match.group(2)))
        elif line and not line.startswith((" ", "\t")):
            current = None if not line.strip().startswith("router") else current
    return graph


def add_down_links(graph: MeshGraph, own: str, peers_down: list[str]) -> None:
    for peer in peers_down:
        graph.nodes.setdefault(peer, {})
        if (own, peer) not in graph.edges and (peer, own) not in graph.edges:
            graph.down.add(tuple(sorted((own, peer))))


def to_dot(graph: MeshGraph, labels: dict[str, str], clients: set[str], own: str | None = None) -> str:
    lines = ["graph wgmesh {", '\tgraph [overlap=false, splines=true];', '\tnode [shape=ellipse, fontname="sans"];']
    for router in sorted(graph.nodes, key=_ip_key):
        attributes = [f'label="{labels.get(router, router)}"']
        if router in clients:
            attributes.append("shape=box")
        if router == own:
            attributes.append("style=bold")
        lines.append(f'\t"{router}" [{", ".join(attributes)}];')
    seen = set()
    for (a, b) in sorted(graph.edges, key=lambda e: (_ip_key(e[0]), _ip_key(e[1]))):
        pair = tuple(sorted((a, b), key=_ip_key))
        if pair in seen:
            continue
        seen.add(pair)
        forward = sorted(graph.edges.get(pair, []))
        back = sorted(graph.edges.get(pair[::-1], []))
        costs = lambda c: ", ".join(map(str, c)) or "?"
        label = costs(forward) if not back or back == forward else f"{costs(forward)} / {costs(back)}"
        style = ""
        peer = pair[1] if pair[0] == own else pair[0] if pair[1] == own else None
        if peer in graph.measured:
            rtts, condition = graph.measured[peer]
            if rtts:
                label += "\\n" + ", ".join(f"{rtt:.1f} ms" for rtt in sorted(rtts))
            if condition in CONDITION_COLOURS:
                colour = CONDITION_COLOURS[condition]
                style = f", color={colour}, fontcolor={colour}, penwidth=2"
        lines.append(f'\t"{pair[0]}" -- "{pair[1]}" [label="{label}"{style}];')
    for a, b in sorted(graph.down):
        lines.append(f'\t"{a}" -- "{b}" [label="down", style=dashed, color=red, fontcolor=red];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))
