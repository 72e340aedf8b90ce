"""How fast the mesh builds itself: N containers booted with systemd and the
.deb installed, every node but node 0 running `wgmesh connect` to node 0 at
the same moment; the time from the last connect returning until every pair
has its links (one per transport family), every link is up with OSPF Full,
and every node pings every other node's IPv4 and IPv6 loopback. Then one
node reboots: the time from its systemd saying "running" until its links
are back and it reaches every node again. Prints a Markdown table.

    .venv/bin/python -m tests.bench.bench_convergence [--nodes 3,5,8] [--transport auto|4]
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab.lab import Lab
from tests.system.debbuild import BuildError, build_deb
from tests.system.meshcheck import LINK_FAMILIES, in_parallel, mesh_problems, reach_problems, state_problems


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
        converged = wait(lambda: not mesh_problems(nodes, families), timeout, interval=0.5)
        links = sum(len(list((n.files_dir / "links").glob("*.toml"))) for n in nodes) // 2

        rebooted = None
        if converged is not None:
            node = nodes[1]
            node.poweroff()
            node.boot()
            node.wait_running(timeout=180)
            rebooted = wait(lambda: not state_problems(node) and not reach_problems([node], nodes), 120, 0.2)
        return {"nodes": count, "links": links, "connects": connects, "converged": converged, "reboot": rebooted}


def seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "did not finish"


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench_convergence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="3,5,8", help="comma-separated node counts (default 3,5,8)")
    parser.add_argument("--transport", choices=sorted(LINK_FAMILIES), default="auto",
                        help="link transport families (auto: IPv4 and IPv6)")
    parser.add_argument("--timeout", type=float, default=180, help="give up on one mesh after this many seconds")
    parser.add_argument("--deb", type=Path, help="the package to install (default: build it from this tree)")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    with package(args.deb, "bench_convergence") as deb:
        rows = [run_one(count, deb, args.transport, args.timeout) for count in counts]
    print(f"\nfull mesh convergence, transport {args.transport}, {os.cpu_count()} CPUs\n")
    print("| nodes | links | all connects returned | full mesh after the last connect | one node rebooted: running -> reaches all |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['nodes']} | {row['links']} | {seconds(row['connects'])} | {seconds(row['converged'])} "
              f"| {seconds(row['reboot'])} |")
    return 0 if all(row["converged"] is not None for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
