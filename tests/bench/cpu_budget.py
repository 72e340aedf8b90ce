"""Where the CPU of a mesh build goes, per program: the build of
bench_convergence (N containers with the .deb, every node but node 0
connecting to node 0 at once), from the moment the connects start until
the mesh has settled. Programs that end in that window are counted by the
kernel's process accounting (`accton`, Debian package acct: one record per
process at its exit, named after its executable or script); those still
running at its end (wireguard-go, bird, the join API, vxlan-sync) by the
growth of their /proc/PID/stat CPU times. Prints a Markdown table.

    .venv/bin/python -m tests.bench.cpu_budget [--nodes 5] [--deb PATH]
"""

import argparse
import collections
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.bench_convergence import connect_all, installed_lab, package, wait
from tests.system.meshcheck import mesh_problems, quick_state_problems

# struct acct_v3 (linux/acct.h): what accton writes on Linux.
ACCT_V3 = struct.Struct("<BBHIIIIIIf8H16s")
TICKS = os.sysconf("SC_CLK_TCK")  # /proc's unit, and acct's (AHZ = 100 on Linux)


def comp_t(value: int) -> float:
    """A comp_t (13-bit mantissa, 3-bit base-8 exponent) in clock ticks."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def exited(path: Path) -> collections.Counter:
    """CPU seconds per command name, from an accounting file."""
    found = collections.Counter()
    data = path.read_bytes()
    for offset in range(0, len(data) - ACCT_V3.size + 1, ACCT_V3.size):
        fields = ACCT_V3.unpack_from(data, offset)
        utime, stime, comm = fields[10], fields[11], fields[18]
        name = comm.split(b"\0", 1)[0].decode(errors="replace")
        found[name] += (comp_t(utime) + comp_t(stime)) / TICKS
    return found


def live_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) of every process now."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def lab_pids(nodes) -> set[int]:
    """Every process of the lab's containers (their PID namespaces)."""
    pids = set()
    for node in nodes:
        namespace = os.readlink(f"/proc/{node.leader_pid()}/ns/pid")
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                        pids.add(int(entry.name))
                except OSError:
                    continue
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(prog="cpu_budget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--deb", type=Path, help="the package to install (default: build it from this tree)")
    args = parser.parse_args()
    if not shutil.which("accton"):
        sys.exit("cpu_budget: needs accton (apt-get install acct)")
    with package(args.deb, "cpu_budget") as deb, tempfile.TemporaryDirectory() as scratch:
        accounting = Path(scratch, "pacct")
        accounting.touch()
        with installed_lab("cpub", args.nodes, deb, "auto") as nodes:
            before = live_cpu()
            subprocess.run(["accton", str(accounting)], check=True)
            started = time.monotonic()
            try:
                connects = connect_all(nodes)
                settled = wait(lambda: not mesh_problems(nodes, states=quick_state_problems), 240, 0.5)
            finally:
                subprocess.run(["accton", "off"], check=True)
            window = time.monotonic() - started
            after = live_cpu()
            ours = lab_pids(nodes)
        # Every exit on the machine is recorded: keep the lab's programs
        # (by name) and leave out the benchmark's own checks (sh, ping, ...).
        totals = exited(accounting)
        for pid, (name, seconds) in after.items():
            if pid in ours:
                totals[name] += seconds - before.get(pid, (name, 0.0))[1]
    print(f"\n{args.nodes} nodes: connects returned after {connects:.1f} s, settled {settled} s after; "
          f"window {window:.1f} s on {os.cpu_count()} CPUs\n")
    print("| program | CPU seconds |")
    print("|---|---|")
    for name, seconds in totals.most_common(25):
        print(f"| {name} | {seconds:.2f} |")
    print(f"| (all) | {sum(totals.values()):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
