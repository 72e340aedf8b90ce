"""Quality routing, measured: one table with
- reroute times on a booted dual-stack triangle 0, 2, 4 (containers, the
  .deb, the shipped defaults, hold-down included): +150 ms, 20 % loss and
  40 ms jitter on 0<->2 until node 0 routes to node 2 via node 4, and back
  after the impairment stops;
- cost changes and bird reconfigurations per hour under steady noise (2 ms
  jitter and 1 % loss each way on every pair, 5 minutes), and the
  false-positive rate the loss threshold gives under that noise;
- the prober's round time and CPU over 1, 50 and 200 links, the
  cost-writer's run time over 200 (tests/bench/bench_quality_links.py).

    sudo .venv/bin/python -m tests.bench.bench_quality [--noise-minutes 5] [--skip-lab]
"""

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.bench_quality_links import cost_writer_row, prober_rows
from tests.system.debbuild import build_deb
from tests.system.qualitycheck import DIRECT, PAIRS, VIA_4, build_triangle, events, settle, wait_route
from wgmesh_common.quality import QualitySettings

SETTINGS = QualitySettings()
IMPAIRMENTS = (("+150 ms RTT", {"delay": 75}), ("20 % loss each way", {"loss": 0.2}),
               ("40 ms jitter (sd each way)", {"jitter": 40}))


def loss_false_positives_per_hour(one_way_loss: float, settings: QualitySettings = SETTINGS) -> float:
    """An upper bound on loss penalties per link and hour under steady
    random loss: the binomial chance that the recent echoes reach the
    threshold, times the decisions made in an hour (overlapping windows make
    the real rate lower)."""
    echoes = settings.echoes * settings.recent_rounds
    needed = math.ceil(echoes * settings.loss_threshold / 100)
    p = 1 - (1 - one_way_loss) ** 2
    tail = sum(math.comb(echoes, k) * p ** k * (1 - p) ** (echoes - k) for k in range(needed, echoes + 1))
    return tail * 3600 / settings.interval


def lab_rows(deb: Path, noise_minutes: float) -> list[tuple[str, str, str]]:
    from tests.system.conftest import start_mesh_lab
    mesh = start_mesh_lab((0, 2, 4), deb, name_prefix="bq")
    rows = []
    try:
        nodes = build_triangle(mesh, timeout=90)
        node0, lab = nodes[0], mesh.lab
        for a, b in PAIRS:
            lab.impair(a, b, jitter=2, loss=0.01)
        print(f"underlay seed {lab.underlay.seed}", flush=True)
        started = time.time()
        time.sleep(noise_minutes * 60)
        per_hour = 60 / noise_minutes
        changes = sum(len(events(n, "cost-change", started)) for n in nodes)
        reconfigures = sum(len(events(n, "bird-reconfigured", started)) for n in nodes)
        for a, b in PAIRS:
            lab.impair(a, b)
        rows.append((f"steady noise, {noise_minutes:g} min, 3 nodes / 12 link ends: cost changes per hour",
                     f"{changes * per_hour:g}", "0"))
        rows.append(("steady noise: bird reconfigurations per hour", f"{reconfigures * per_hour:g}", "0"))
        settle(nodes, timeout=300)

        for what, impairment in IMPAIRMENTS:
            lab.impair(0, 2, **impairment)
            away = wait_route(node0, 2, VIA_4, 120)
            lab.impair(0, 2)
            back = wait_route(node0, 2, DIRECT, SETTINGS.hold_down + 300)
            rows.append((f"{what} on 0<->2: node 0 routes via node 4 after",
                         "never" if away is None else f"{away:.1f} s", "<= 30 s"))
            rows.append((f"{what} removed: direct again after (hold-down {SETTINGS.hold_down} s for loss/jitter)",
                         "never" if back is None else f"{back:.1f} s", "<= 60 s + hold-down"))
            settle(nodes, timeout=SETTINGS.hold_down + 300)
    finally:
        mesh.lab.close(raise_on_problems=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise-minutes", type=float, default=5.0)
    parser.add_argument("--skip-lab", action="store_true", help="only the prober and cost-writer rows")
    parser.add_argument("--seed", type=int, default=None, help="for the link benchmark's keys and RTTs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_quality: needs root (containers, network namespaces)")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    rows = []
    if not args.skip_lab:
        with tempfile.TemporaryDirectory() as scratch:
            rows += lab_rows(build_deb(Path(scratch)), args.noise_minutes)
    rows.append(("loss penalties per link-hour under 1 % loss each way (binomial bound, defaults)",
                 f"{loss_false_positives_per_hour(0.01):.4f}", ""))
    for row in prober_rows([1, 50, 200], seed=seed) + cost_writer_row(200, seed=seed):
        rows.append((f"{row['what']}, {row['links']} links: wall / CPU / % of a core at {SETTINGS.interval} s",
                     f"{row['wall_s']:.2f} s / {row['cpu_s']:.2f} s / {row['core_pct']:.1f} %",
                     "< 3 s, < 5 %" if row["what"].endswith("prober round") and row["links"] == 200 else ""))
    print(f"\nseed {seed}\n\n| what | measured | target |\n|---|---|---|")
    for what, measured, target in rows:
        print(f"| {what} | {measured} | {target} |")


if __name__ == "__main__":
    main()
