"""How long the systemd generator takes for 500 link files (every boot and
every daemon-reload waits for it), Python's own start-up included, beside a
bare interpreter start as the yardstick. Prints a Markdown table.

    .venv/bin/python -m tests.bench.bench_generator [--links 500] [--runs 15]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).parents[2]
GENERATOR = PROJECT / "generators" / "wgmesh-generator"
KEY = "Wk9OdGFpbHMtYXJlLW5vdC1rZXlzLWp1c3QtdGVzdHM="


def make_tree(root: Path, count: int) -> None:
    links = root / "etc/wgmesh/links"
    links.mkdir(parents=True)
    (root / "etc/wgmesh/wgmesh.toml").write_text("[node]\nid = 0\n")
    for i in range(count):
        name = f"wgm{i}"
        offset = 4 + 2 * (i % 250)
        (links / f"{name}.toml").write_text(
            f'name = "{name}"\npeer_id = {2 * (i % 100) + 2}\nrole = "listener"\nfamily = 4\n'
            f'listen_port = {51820 + i}\npublic_key = "{KEY}"\npeer_public_key = "{KEY}"\noffset = {offset}\n'
            f'local4 = "10.0.0.{offset % 256}"\npeer4 = "10.0.0.{(offset + 1) % 256}"\n'
            f'local6 = "fd10::{offset:x}"\npeer6 = "fd10::{offset + 1:x}"\n')
        for secret in ("key", "psk"):
            (links / f"{name}.{secret}").write_text(KEY + "\n")


def timed(argv: list[str], env: dict, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wgmesh-bench-"))
    # systemd hands generators directories under /run, a tmpfs: measure there,
    # not on whatever disk /tmp is (symlinks on a disk cost 10x more).
    out_base = Path(tempfile.mkdtemp(prefix="wgmesh-bench-", dir="/dev/shm"))
    try:
        make_tree(work / "root", args.links)
        env = dict(os.environ, WGMESH_ROOT=str(work / "root"))
        out = out_base / "out"
        generator = []
        for _ in range(args.runs):
            shutil.rmtree(out, ignore_errors=True)
            generator += timed([sys.executable, "-I", str(GENERATOR), str(out)], env, 1)
        wanted = len(list((out / "wgmesh.target.wants").iterdir()))
        assert wanted == args.links, f"the generator wanted {wanted} units, not {args.links}"
        bare = timed([sys.executable, "-I", "-c", "pass"], env, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out_base, ignore_errors=True)
    g, b = statistics.median(generator), statistics.median(bare)
    print(f"| what ({args.runs} runs, median) | ms |")
    print("|---|---|")
    print(f"| python3 -I -c pass (start-up alone) | {b:.0f} |")
    print(f"| wgmesh-generator, {args.links} link files | {g:.0f} |")
    print(f"| generator / bare start-up | {g / b:.1f}x |")
    print("| target | < 150 |")


if __name__ == "__main__":
    main()
