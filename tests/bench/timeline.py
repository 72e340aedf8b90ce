"""Where the seconds of a mesh build-up go, link by link: the build of
bench_convergence (N containers, every node but node 0 connecting to node 0
at once), with two watchers started in every node before the connects: the
kernel's route events of the mesh table (`ip monitor`, no polling) and
bird's OSPF neighbour states (birdc every POLL seconds, changes only). After
the full mesh, each node's journal (the WGMESH_EVENT entries) is read, and
every link gets its times, in seconds after the last connect returned:

    seen     the dialer first has a route to the listener's loopback
    pass     the dialer's mesh pass that made the link started
    served   the listener's link-added (file written, unit up, bird reconfigured) / its unit up
    dialed   the dialer's unit up (link-up)
    full     OSPF Full on both sides
    route    both sides route to the other's loopback over this link

The links of the first connects (to node 0) have negative times. The table
ends with the stage that the last link spent longest in: the critical path.

    .venv/bin/python -m tests.bench.timeline [--nodes 5] [--deb PATH]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.bench_convergence import connect_all, installed_lab, package, wait
from tests.system.meshcheck import LINK_FAMILIES, mesh_problems

POLL = 0.3
BIRD_CTL = "/run/wgmesh/bird.ctl"
ROUTE_WATCH = "ip -o monitor route | while IFS= read -r line; do echo \"$EPOCHREALTIME $line\"; done"


def ospf_watch(control: str, poll: float) -> str:
    """A shell loop printing bird's OSPF neighbours ("@TIME" and one line per
    neighbour) each time they change, looked at every poll seconds."""
    return f"""
previous=""
while :; do
    now=$EPOCHREALTIME
    current=$( (birdc -s {control} show ospf neighbors wgmesh4; birdc -s {control} show ospf neighbors wgmesh6) \
        2>/dev/null | awk '/wgm[0-9]/ {{print $1, $3, $5, $6}}')
    if [ "$current" != "$previous" ]; then echo "@$now"; echo "$current"; previous=$current; fi
    sleep {poll}
done
"""


OSPF_WATCH = ospf_watch(BIRD_CTL, POLL)
# A node's loopback as its route names it: the address or the stub net around it.
LOOPBACK4 = re.compile(r"^10\.0\.(\d+)\.(1(/32)?|0/30)$")
LOOPBACK6 = re.compile(r"^fd10:0:0:([0-9a-f]+)::(1(/128)?|/64)$")


@dataclass
class Link:
    dialer: int
    listener: int
    family: int
    times: dict[str, float] = field(default_factory=dict)

    def name_on(self, node_id: int) -> str:
        peer = self.listener if node_id == self.dialer else self.dialer
        return f"wgm{peer}" if self.family == 4 else f"wgm{peer}v6"


def node_of(address: str) -> int | None:
    for pattern, base in ((LOOPBACK4, 10), (LOOPBACK6, 16)):
        found = pattern.match(address)
        if found:
            return int(found.group(1), base)
    return None


def route_events(lines: list[str]) -> list[tuple[float, int, int, frozenset[str]]]:
    """(time, node reached, IP version, the devices of its next hops) of
    every route added to a node's loopback."""
    events = []
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[1] == "Deleted":
            continue
        peer = node_of(words[1])
        if peer is None:
            continue
        devices = frozenset(words[i + 1] for i, w in enumerate(words[:-1]) if w == "dev")
        events.append((float(words[0]), peer, 6 if ":" in words[1] else 4, devices))
    return events


def full_events(lines: list[str]) -> dict[tuple[str, int], float]:
    """(link device, OSPF's IP version) -> the first time its neighbour was Full."""
    first, now = {}, None
    for line in lines:
        if line.startswith("@"):
            now = float(line[1:])
            continue
        words = line.split()
        if now is not None and len(words) >= 4 and words[1].startswith("Full"):
            first.setdefault((words[2], 6 if ":" in words[3] else 4), now)
    return first


def journal_events(node, out: Path) -> list[dict]:
    """The node's wgmesh events and failed passes; its whole journal is kept in out."""
    text = node.run(["journalctl", "-b", "-o", "json", "--no-pager"], check=False, timeout=60).stdout
    (out / f"journal{node.mesh_id}.json").write_text(text)
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "WGMESH_EVENT" in entry or "mesh pass failed" in str(entry.get("MESSAGE", "")) \
                or "could not connect" in str(entry.get("MESSAGE", "")):
            entry["time"] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
            entries.append(entry)
    return entries


def first(entries, after: float = float("-inf"), **fields) -> float | None:
    times = [e["time"] for e in entries if e["time"] >= after
             and all(str(e.get(f"WGMESH_{k.upper()}" if k != "event" else "WGMESH_EVENT")) == str(v)
                     for k, v in fields.items())]
    return min(times) if times else None


def build_links(ids, families, journals, routes, fulls) -> list[Link]:
    links = []
    for a in ids:
        for b in ids:
            if a >= b:
                continue
            for family in families:
                name_on_a = f"wgm{b}" if family == 4 else f"wgm{b}v6"
                added = [e for e in journals[a] if e.get("WGMESH_EVENT") == "link-added"
                         and e.get("WGMESH_LINK") == name_on_a]
                if not added:
                    continue
                # The link file records the role; the journal's message says it.
                role_a = "dialer" if "(dialer)" in added[-1]["MESSAGE"] else "listener"
                link = Link(a, b, family) if role_a == "dialer" else Link(b, a, family)
                links.append(timeline(link, journals, routes, fulls))
    return links


def timeline(link: Link, journals, routes, fulls) -> Link:
    dialer, listener = link.dialer, link.listener
    on_dialer, on_listener = link.name_on(dialer), link.name_on(listener)
    t = link.times
    t["seen"] = min((at for at, peer, _, _ in routes[dialer] if peer == listener), default=None)
    t["served"] = first(journals[listener], event="link-added", link=on_listener)
    if t["served"] is not None:
        passes = [e["time"] for e in journals[dialer] if e.get("WGMESH_EVENT") == "mesh-pass-started"
                  and e["time"] <= t["served"]]
        t["pass"] = max(passes) if passes else None
    t["served_up"] = first(journals[listener], event="link-up", link=on_listener)
    t["dialed"] = first(journals[dialer], event="link-up", link=on_dialer)
    # Every link carries both IP versions (OSPFv2 and v3 on each): done is
    # both adjacencies Full and both loopback routes over it, on both sides.
    ends = ((dialer, listener, on_dialer), (listener, dialer, on_listener))
    fulls_seen = [fulls[node].get((name, version)) for node, _, name in ends for version in (4, 6)]
    t["full"] = max(fulls_seen) if None not in fulls_seen else None
    direct = [min((at for at, peer, v, devices in routes[node] if peer == other and v == version and name in devices),
                  default=None) for node, other, name in ends for version in (4, 6)]
    t["route"] = max(direct) if None not in direct else None
    return link


def fmt(value: float | None, zero: float) -> str:
    return f"{value - zero:6.1f}" if value is not None else "     -"


def report(links: list[Link], zero: float, journals) -> str:
    rows = ["| link (dialer -> listener) | seen | pass | served (added / unit up) | dialed | full | route |",
            "|---|---|---|---|---|---|---|"]
    for link in sorted(links, key=lambda li: li.times.get("route") or float("inf")):
        t = link.times
        rows.append(f"| {link.dialer} -> {link.listener} IPv{link.family} | {fmt(t.get('seen'), zero)} "
                    f"| {fmt(t.get('pass'), zero)} | {fmt(t.get('served'), zero)} / {fmt(t.get('served_up'), zero)} "
                    f"| {fmt(t.get('dialed'), zero)} | {fmt(t.get('full'), zero)} | {fmt(t.get('route'), zero)} |")
    steps = (("seen -> pass", "seen", "pass"), ("pass -> served", "pass", "served"),
             ("served -> dialed", "served", "dialed"), ("dialed -> full", "dialed", "full"),
             ("full -> route", "full", "route"))
    meshed = [li for li in links if li.times.get("pass") is not None]
    rows += ["", "| stage (links made by mesh passes) | median | max |", "|---|---|---|"]
    for label, a, b in steps:
        spans = [li.times[b] - li.times[a] for li in meshed if li.times.get(a) and li.times.get(b)]
        if spans:
            rows.append(f"| {label} | {statistics.median(spans):.1f} s | {max(spans):.1f} s |")
    passes = sorted((e["time"] - zero, node) for node, entries in journals.items() for e in entries
                    if e.get("WGMESH_EVENT") == "mesh-pass-started")
    failures = sorted((e["time"] - zero, node, e["MESSAGE"]) for node, entries in journals.items() for e in entries
                      if "WGMESH_EVENT" not in e)
    rows += ["", "mesh passes started (s, node): " + ", ".join(f"{at:.1f} n{node}" for at, node in passes)]
    rows += [f"  {at:6.1f} node {node}: {message}" for at, node, message in failures]
    return "\n".join(rows)


def run(count: int, deb: Path, transport: str, timeout: float) -> int:
    ids = [2 * i for i in range(count)]
    families = LINK_FAMILIES[transport]
    with installed_lab("tl", count, deb, transport) as nodes:
        out = Path(tempfile.mkdtemp(prefix="wgmesh-timeline-"))
        watchers = []
        for node in nodes:
            for kind, script in (("routes", ROUTE_WATCH), ("ospf", OSPF_WATCH)):
                with open(out / f"{kind}{node.mesh_id}", "w") as sink:
                    watchers.append(node.popen(["bash", "-c", script], stdout=sink, stderr=subprocess.DEVNULL))
        try:
            connects = connect_all(nodes)
            zero = time.time()
            converged = wait(lambda: not mesh_problems(nodes, families), timeout, interval=0.5)
            time.sleep(1)
        finally:
            for watcher in watchers:
                os.killpg(watcher.pid, 15)
                watcher.wait(timeout=10)
        journals = {node.mesh_id: journal_events(node, out) for node in nodes}
    routes = {i: route_events((out / f"routes{i}").read_text().splitlines()) for i in ids}
    fulls = {i: full_events((out / f"ospf{i}").read_text().splitlines()) for i in ids}
    links = build_links(ids, families, journals, routes, fulls)
    mesh = f"after {converged:.1f} s" if converged is not None else "not reached"
    print(f"\n{count} nodes, transport {transport}: connects returned after {connects:.1f} s, full mesh {mesh}; "
          f"times in seconds after the last connect returned (raw watcher output: {out})\n")
    print(report(links, zero, journals))
    return 0 if converged is not None else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="timeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--transport", choices=sorted(LINK_FAMILIES), default="auto")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--deb", type=Path, help="the package to install (default: build it from this tree)")
    args = parser.parse_args()
    with package(args.deb, "timeline") as deb:
        return run(args.nodes, deb, args.transport, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
