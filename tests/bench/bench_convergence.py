"""How fast the mesh builds itself: N containers booted with systemd and the
.deb installed, every node but node 0 running `wgmesh connect` to node 0 at
the same moment. Two times from the last connect returning:
- reachable (issue 11's measure): every pair has its links (one per
  transport family), every link is up with a handshake, and every node pings
  every other node's IPv4 and IPv6 loopback, by whatever path OSPF has;
- settled: besides, every adjacency is Full and linked nodes route to each
  other over their direct link.
Then one node reboots: the time from its boot until its links are back
and it reaches every node again (from the boot, not from systemd saying
"running": a faster start-up moves "running" earlier without bringing the
links back any sooner). Prints a Markdown table.

With --compare OLD.deb, each node count is built with OLD.deb and with this
tree's package (or --deb) in turns, --repeat times, and the table gains the
ratio of the medians: the machines are shared and noisy, so two builds are
only compared within one run.

    .venv/bin/python -m tests.bench.bench_convergence [--nodes 3,5,8] [--transport auto|4]
        [--compare OLD.deb] [--repeat N]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab.lab import Lab
from tests.system.debbuild import BuildError, build_deb
from tests.system.meshcheck import (
    LINK_FAMILIES,
    in_parallel,
    mesh_problems,
    quick_state_problems,
    reach_problems,
    reachable_problems,
    state_problems,
)


def wait(predicate, timeout: float, interval: float = 0.2) -> float | None:
    """Seconds until predicate() is true, None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    return None


def install(nodes, deb: Path, share_dir: Path, transport: str) -> None:
    """The .deb on every node, each initialised (node 0 public)."""
    (share_dir / deb.name).write_bytes(deb.read_bytes())
    in_parallel(lambda n: n.run(["apt-get", "install", "-y", "-q", f"/lab/{deb.name}"], timeout=600), nodes)

    def init(node):
        node.run(["wgmesh", "init", str(node.mesh_id)] + (["--public"] if node.mesh_id == 0 else []))
        if transport != "auto":
            node.run(["wgmesh", "set", "wireguard.transport", transport])

    in_parallel(init, nodes)


def connect_all(nodes) -> float:
    """Every node but the first runs `wgmesh connect` to the first at the
    same moment; the seconds until the last one returned."""
    token = nodes[0].run(["wgmesh", "token"]).stdout.strip()
    url = f"http://{nodes[0].addresses.v4}:8080"
    start = time.monotonic() + 0.5

    def connect(node):
        time.sleep(max(0.0, start - time.monotonic()))
        node.run(["wgmesh", "connect", url, token], timeout=300)

    in_parallel(connect, nodes[1:])
    return time.monotonic() - start


@contextmanager
def package(deb: Path | None, prog: str) -> Iterator[Path]:
    """The .deb to install: deb, or one built from this tree (root only)."""
    if os.geteuid() != 0:
        sys.exit(f"{prog}: needs root (containers)")
    with tempfile.TemporaryDirectory() as out:
        try:
            yield deb or build_deb(Path(out))
        except BuildError as error:
            sys.exit(f"{prog}: {error}")


@contextmanager
def installed_lab(name: str, count: int, deb: Path, transport: str) -> Iterator[list]:
    """count containers (IDs 0, 2, ...) with deb installed and initialised."""
    ids = [2 * i for i in range(count)]
    with Lab(f"{name}{count}", kind="container", ids=ids) as lab:
        nodes = [lab[i] for i in ids]
        install(nodes, deb, lab.share_dir, transport)
        yield nodes


def run_one(count: int, deb: Path, transport: str, timeout: float) -> dict:
    families = LINK_FAMILIES[transport]
    with installed_lab("bc", count, deb, transport) as nodes:
        connects = connect_all(nodes)
        started = time.monotonic()
        reachable = wait(lambda: not reachable_problems(nodes, families, quick_state_problems), timeout, 0.5)
        settled = None
        if reachable is not None:
            left = timeout - (time.monotonic() - started)
            if wait(lambda: not mesh_problems(nodes, families, states=quick_state_problems), left, 0.5) is not None:
                settled = time.monotonic() - started
        links = sum(len(list((n.files_dir / "links").glob("*.toml"))) for n in nodes) // 2

        rebooted = None
        if settled is not None:
            node = nodes[1]
            node.poweroff()
            node.boot()
            node.wait_running(timeout=180)
            back = wait(lambda: not state_problems(node) and not reach_problems([node], nodes), 120, 0.2)
            rebooted = total(node.boot_seconds, back)
        return {"nodes": count, "links": links, "connects": connects, "reachable": reachable,
                "settled": settled, "build": total(connects, reachable), "reboot": rebooted}


def total(*parts: float | None) -> float | None:
    return None if None in parts else sum(parts)


def seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "did not finish"


COLUMNS = (("connects", "all connects returned"), ("reachable", "reachable after the last connect"),
           ("settled", "settled after the last connect"), ("build", "whole build-up (connects + reachable)"),
           ("reboot", "one node rebooted: boot -> reaches all"))


def print_table(rows: list[dict], transport: str) -> None:
    print(f"\nfull mesh convergence, transport {transport}, {os.cpu_count()} CPUs\n")
    print("| nodes | package | links | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---" * (3 + len(COLUMNS)) + "|")
    for row in rows:
        print(f"| {row['nodes']} | {row['package']} | {row['links']} | "
              + " | ".join(seconds(row[key]) for key, _ in COLUMNS) + " |")


def median(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows]
    return statistics.median(values) if values and None not in values else None


def print_ratios(rows: list[dict]) -> None:
    """new / old of the medians, per node count (a run that did not finish
    leaves its ratio out)."""
    print("\n| nodes | " + " | ".join(f"{title}: new / old (medians)" for _, title in COLUMNS) + " |")
    print("|---" * (1 + len(COLUMNS)) + "|")
    for count in sorted({row["nodes"] for row in rows}):
        cells = []
        for key, _ in COLUMNS:
            old = median([r for r in rows if r["nodes"] == count and r["package"] == "old"], key)
            new = median([r for r in rows if r["nodes"] == count and r["package"] == "new"], key)
            cells.append(f"{new / old:.2f} ({new:.1f} / {old:.1f} s)" if old and new else "n/a")
        print(f"| {count} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench_convergence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="3,5,8", help="comma-separated node counts (default 3,5,8)")
    parser.add_argument("--transport", choices=sorted(LINK_FAMILIES), default="auto",
                        help="link transport families (auto: IPv4 and IPv6)")
    parser.add_argument("--timeout", type=float, default=180, help="give up on one mesh after this many seconds")
    parser.add_argument("--deb", type=Path, help="the package to install (default: build it from this tree)")
    parser.add_argument("--compare", type=Path, metavar="OLD_DEB", help="also build each mesh with this package")
    parser.add_argument("--repeat", type=int, default=1, help="runs per node count and build (default 1)")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    rows = []
    with package(args.deb, "bench_convergence") as deb:
        builds = [("old", args.compare), ("new", deb)] if args.compare else [("new", deb)]
        for count in counts:
            for _ in range(args.repeat):
                for build, package_file in builds:
                    row = run_one(count, package_file, args.transport, args.timeout)
                    rows.append({**row, "package": build})
                    print(f"[bench] {build}: {row}", flush=True)
    print_table(rows, args.transport)
    if args.compare:
        print_ratios(rows)
    return 0 if all(row["settled"] is not None for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
