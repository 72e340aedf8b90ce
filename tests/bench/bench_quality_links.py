"""What link quality costs a node: one `wgmesh-prober` round (wall and CPU)
over 1, 50 and 200 links whose peers really answer, and one
`wgmesh-cost-writer` run over 200 links with full probe windows. Prints a
Markdown table.

The peers live in a network namespace of their own, joined by one veth pair
to the namespace the prober runs in; no packet leaves those two namespaces.

    sudo .venv/bin/python -m tests.bench.bench_quality_links [--sizes 1,50,200] [--runs 5] [--seed N]
"""

import argparse
import base64
import contextlib
import ipaddress
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wgmesh_common import linkfile, probe
from wgmesh_common.paths import Paths
from wgmesh_common.quality import QualitySettings, Round

PROJECT = Path(__file__).parents[2]
BIN = PROJECT / ".venv" / "bin"
# The lab's `down --all` sweeps namespaces with this prefix after a crash.
NETNS_PREFIX = "wgml-bench-"
SETTINGS = QualitySettings()
# A few unanswered echoes can be the machine's hiccup; more means the set-up
# is broken and the numbers would measure timeouts, not the prober.
LOSSY_LINKS_ALLOWED = 2


def make_links(count: int, rng: random.Random) -> list[tuple[linkfile.Link, str, str]]:
    """count valid links (one /31 and /127 each, node 0's side) with random keys."""
    def key() -> str:
        return base64.b64encode(rng.randbytes(32)).decode()

    links = []
    for i in range(count):
        offset = 4 + 2 * i
        v4, v6 = ipaddress.ip_address("10.0.0.0") + offset, ipaddress.ip_address("fd10::") + offset
        link = linkfile.parse({
            "name": f"wgm{i}", "peer_id": i + 1, "role": "listener", "family": 4,
            "listen_port": 51820 + i, "public_key": key(), "peer_public_key": key(), "offset": offset,
            "local4": str(v4), "peer4": str(v4 + 1), "local6": str(v6), "peer6": str(v6 + 1),
        }, "bench")
        links.append((link, key(), key()))
    return links


@contextlib.contextmanager
def node_tree(links: list[tuple[linkfile.Link, str, str]]):
    """A WGMESH_ROOT with node 0 initialised and the links saved. On tmpfs,
    as /run is: every probe file write is fsync-ed, and a disk would make
    the benchmark measure the disk."""
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-", dir="/dev/shm") as root:
        paths = Paths(Path(root))
        paths.config_file.parent.mkdir(parents=True)
        paths.config_file.write_text("[node]\nid = 0\n")
        for link, private_key, psk in links:
            linkfile.save(paths, link, private_key, psk)
        yield paths


def ip(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", *args], input=stdin, text=True, check=True, capture_output=True)


@contextlib.contextmanager
def answering_peers(links: list[linkfile.Link]):
    """Two namespaces, node and peer, and one veth pair per link between
    them: the node's end is named as the link, with the link's own /31
    address, the peer's end answers at the link's peer address (the prober
    binds each link's echoes to its interface and address). Yields the node
    namespace's name."""
    node, peer = (f"{NETNS_PREFIX}{os.getpid()}-{side}" for side in ("node", "peer"))
    created = []
    try:
        for name in (node, peer):
            ip("netns", "add", name)
            created.append(name)
        ip("-n", node, "-batch", "-", stdin="link set lo up\n" + "".join(
            f"link add {link.name} type veth peer name p{index} netns {peer}\n"
            f"address add {link.local4}/31 dev {link.name}\nlink set {link.name} up\n"
            for index, link in enumerate(links)))
        ip("-n", peer, "-batch", "-", stdin="link set lo up\n" + "".join(
            f"address add {link.peer4}/31 dev p{index}\nlink set p{index} up\n" for index, link in enumerate(links)))
        yield node
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run of argv. `ip netns
    exec` execs the program in place, so the child's usage is the program's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def row(what: str, links: int, times: list[tuple[float, float]], target: str, check: str) -> dict:
    wall = statistics.median(t[0] for t in times)
    cpu = statistics.median(t[1] for t in times)
    return {"what": what, "links": links, "runs": len(times), "wall_s": wall, "cpu_s": cpu,
            "core_pct": cpu / SETTINGS.interval * 100, "target": target, "check": check}


def loss_check(paths: Paths, links: list[linkfile.Link]) -> str:
    results = {link.name: probe.read_result(paths, link.name) for link in links}
    bad = {name: (r.loss if r else "no probe file") for name, r in results.items() if r is None or r.loss > 0}
    if len(bad) > LOSSY_LINKS_ALLOWED:
        shown = ", ".join(f"{name}: {loss}" for name, loss in list(bad.items())[:10])
        raise RuntimeError(f"{len(bad)} of {len(links)} links lost echoes or have no probe file ({shown}): "
                           "the peers do not answer, the numbers would be worthless")
    return f"{len(links) - len(bad)}/{len(links)} probe files, loss 0"


def prober_rows(sizes: list[int], runs: int = 5, seed: int = 0) -> list[dict]:
    """One row per size: the median prober round at the default settings."""
    links = make_links(max(sizes), random.Random(seed))
    rows = []
    with answering_peers([link for link, _, _ in links]) as netns:
        for size in sizes:
            with node_tree(links[:size]) as paths:
                env = dict(os.environ, WGMESH_ROOT=str(paths.root), WGMESH_LOG="stderr")
                argv = ["ip", "netns", "exec", netns, str(BIN / "wgmesh-prober")]
                # Unmeasured rounds first, so the measured ones read and
                # write full windows as every round does in steady state.
                for _ in range(SETTINGS.window_rounds):
                    timed(argv, env)
                times = [timed(argv, env) for _ in range(runs)]
                check = loss_check(paths, [link for link, _, _ in links[:size]])
            # A round is 20 echoes 50 ms apart: one that ends sooner did not
            # keep the spacing, and its time is not the real round's.
            paced = (SETTINGS.echoes - 1) * SETTINGS.echo_spacing_ms / 1000
            if statistics.median(t[0] for t in times) < paced:
                check += f"; NOT paced (a paced round takes >= {paced:.2f} s)"
            target = "round < 3 s, < 5 % of a core" if size == 200 else ""
            rows.append(row("wgmesh-prober round", size, times, target, check))
    return rows


def cost_writer_row(links: int, runs: int = 5, seed: int = 0) -> list[dict]:
    """The cost-writer over `links` links, each with a full window of fresh
    rounds (seeded random RTTs, no loss); bird is not running, so it only
    decides and writes its files."""
    rng = random.Random(seed)
    made = make_links(links, rng)
    with node_tree(made) as paths:
        now = time.time()
        for link, _, _ in made:
            rounds = tuple(Round(round(now - SETTINGS.interval * k, 3), SETTINGS.echoes,
                                 tuple(round(rng.uniform(0.2, 2.0), 3) for _ in range(SETTINGS.echoes)))
                           for k in reversed(range(SETTINGS.window_rounds)))
            probe.write(paths, probe.ProbeFile(link.name, link.peer_id, rounds))
        env = dict(os.environ, WGMESH_ROOT=str(paths.root), WGMESH_LOG="stderr")
        times = [timed([str(BIN / "wgmesh-cost-writer")], env) for _ in range(runs)]
        written = paths.bird_config.is_file() and paths.costs_file.is_file()
        if not written:
            raise RuntimeError("the cost-writer wrote no bird config or costs file")
    return [row("wgmesh-cost-writer", links, times, "", "bird.conf and costs.toml written")]


def print_table(rows: list[dict]) -> None:
    print(f"| what | links | runs | wall s (median) | CPU s (median) "
          f"| % of a core at {SETTINGS.interval} s interval | target | check |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['links']} | {r['runs']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} "
              f"| {r['core_pct']:.2f} | {r['target']} | {r['check']} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_quality_links", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,50,200", help="comma-separated link counts for the prober")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per row (median)")
    parser.add_argument("--seed", type=int, default=None, help="seed for keys and RTTs (default: random)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_quality_links: needs root (network namespaces, raw ICMP sockets)")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    # A plain `kill` must unwind through the finally blocks as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"seed {seed}; defaults: {SETTINGS.echoes} echoes every {SETTINGS.echo_spacing_ms} ms, "
          f"timeout {SETTINGS.echo_timeout_ms} ms, window {SETTINGS.window_rounds} rounds\n", flush=True)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows = prober_rows(sizes, args.runs, seed) + cost_writer_row(max(sizes), args.runs, seed)
    print_table(rows)


if __name__ == "__main__":
    main()
