"""Where a join's and a mesh pass's seconds and CPU go: three containers
(nodes 0, 2, 4) booted with systemd and the .deb installed, the mesh timer,
the mesh service and the prober masked so that nothing but the measured
work runs.

- node 2 joins node 0 under cProfile (the joining side's Python, wall time);
- node 4 joins node 0 unprofiled: the joining side's CPU (the command and
  its children) and the serving side's (every process of node 0: join
  helper, link unit, cost-writer, bird, systemd, less what they use idle);
- node 4, which routes to node 2 through node 0, runs `wgmesh mesh` under
  cProfile, and node 2's units' CPU for the serving side of that pass.

    .venv/bin/python -m tests.bench.profile_join [--deb FILE] [--top 15]
"""

import argparse
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from tests.lab.lab import Lab
from tests.system.debbuild import BuildError, build_deb
from tests.system.meshcheck import in_parallel

MASKED = ["wgmesh-mesh.timer", "wgmesh-mesh.service", "wgmesh-prober.timer"]
# The command and everything it started, as the kernel counted it.
CPU_OF = ("import resource, subprocess, sys, time; t = time.monotonic(); "
          "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
          "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
          "print(f'{r.ru_utime + r.ru_stime:.3f} {time.monotonic() - t:.3f}')")


# Every process of the container, with what the processes it reaped used:
# systemd (PID 1) reaps the units' processes (link units, cost-writer,
# systemctl), so their CPU stays counted after they exit. Commands run
# from the host through nsenter are reaped outside: not counted.
CONTAINER_CPU = ("import os; hz = os.sysconf('SC_CLK_TCK'); total = 0\n"
                 "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
                 "    try: fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()\n"
                 "    except OSError: continue\n"
                 "    total += sum(int(v) for v in fields[11:15])\n"
                 "print(total / hz)")


def container_cpu(node) -> float:
    """CPU seconds used so far by the container's processes (see above)."""
    return float(node.run(["python3", "-c", CONTAINER_CPU]).stdout)


def top(path: Path, count: int) -> str:
    """wgmesh's own functions by cumulative time, then everything by own time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("cumulative").print_stats("wgmesh_common", count)
    stats.sort_stats("tottime").print_stats(count)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def settle(node, seconds: float = 4.0) -> None:
    """Until the units a join started (link, cost-writer) are done."""
    time.sleep(seconds)
    node.run("systemctl is-system-running --wait >/dev/null 2>&1 || true", timeout=60)


def run(deb: Path, count: int) -> None:
    with Lab("pj", kind="container", ids=[0, 2, 4]) as lab:
        nodes = {i: lab[i] for i in (0, 2, 4)}
        (lab.share_dir / deb.name).write_bytes(deb.read_bytes())
        in_parallel(lambda n: n.run(["apt-get", "install", "-y", "-q", f"/lab/{deb.name}"], timeout=600),
                    list(nodes.values()))
        in_parallel(lambda n: n.run(["wgmesh", "init", str(n.mesh_id)] + (["--public"] if n.mesh_id == 0 else [])),
                    list(nodes.values()))
        for node in nodes.values():
            node.run(["systemctl", "mask", "--now", *MASKED])
            node.run(["wgmesh", "set", "wireguard.transport", "4"])
        token = nodes[0].run(["wgmesh", "token"]).stdout.strip()
        url = f"http://{nodes[0].addresses.v4}:8080"

        started = time.monotonic()
        nodes[2].run(["python3", "-m", "cProfile", "-o", "/var/tmp/join.prof", "/usr/bin/wgmesh", "connect",
                      url, token], timeout=300)
        print(f"\n## node 2 joins node 0 under cProfile: {time.monotonic() - started:.2f} s wall\n")
        print(top(nodes[2].host_path("/var/tmp/join.prof"), count))
        settle(nodes[0])

        idle = container_cpu(nodes[0])
        time.sleep(4)
        before = container_cpu(nodes[0])
        background = before - idle  # 4 s of an idle node (wireguard-go, bird, vxlan-sync)
        client = nodes[4].run(["python3", "-c", CPU_OF, "wgmesh", "connect", url, token], timeout=300).stdout.split()
        settle(nodes[0])
        served = container_cpu(nodes[0]) - before - background
        print(f"\n## node 4 joins node 0: joining side {float(client[0]):.2f} s CPU ({float(client[1]):.2f} s wall); "
              f"serving side {served:.2f} s CPU (node 0's processes over the join and 4 s after, less 4 s idle: "
              f"{background:.2f} s)")

        # Node 4 learns node 2's loopback over OSPF through node 0.
        deadline = time.monotonic() + 60
        while "10.0.2.1" not in nodes[4].run(["wgmesh", "used"]).stdout and time.monotonic() < deadline:
            time.sleep(0.5)
        idle = container_cpu(nodes[2])
        time.sleep(4)
        before = container_cpu(nodes[2])
        background = before - idle
        started = time.monotonic()
        output = nodes[4].run(["python3", "-m", "cProfile", "-o", "/var/tmp/mesh.prof", "/usr/bin/wgmesh", "mesh"],
                              timeout=300, check=False).stdout.strip()
        wall = time.monotonic() - started
        settle(nodes[2])
        served = container_cpu(nodes[2]) - before - background
        print(f"\n## node 4's mesh pass under cProfile ({output!r}): {wall:.2f} s wall; "
              f"node 2 serving {served:.2f} s CPU\n")
        print(top(nodes[4].host_path("/var/tmp/mesh.prof"), count))


def main() -> int:
    parser = argparse.ArgumentParser(prog="profile_join", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deb", type=Path, help="the package to install (default: build it from this tree)")
    parser.add_argument("--top", type=int, default=15, help="profile lines to print (by cumulative time)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile_join: needs root (containers)")
    with tempfile.TemporaryDirectory() as out:
        try:
            deb = args.deb or build_deb(Path(out))
        except BuildError as error:
            sys.exit(f"profile_join: {error}")
        run(deb, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
