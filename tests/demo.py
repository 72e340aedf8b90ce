"""The demo behind tests/demo: build the .deb, boot N containers, install it
with apt, `wgmesh init` each, join them all to node 0 at once, wait for the
full mesh, show every node's `wgmesh status` and how long each step took."""

import argparse
import sys
import time
from pathlib import Path

from tests.integration.helpers import wait_until
from tests.lab.lab import Lab
from tests.lab.resources import LabRecord
from tests.system.debbuild import BuildError, build_deb
from tests.system.meshcheck import in_parallel, mesh_problems

LAB_NAME = "demo"


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def done(started: float) -> float:
    elapsed = time.monotonic() - started
    print(f"    ({elapsed:.1f} s)", flush=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(prog="tests/demo", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (IDs 0, 2, 4, ...)")
    parser.add_argument("--keep", action="store_true", help="leave the mesh up until Ctrl-C")
    args = parser.parse_args()
    if not 2 <= args.nodes <= 20:
        parser.error("--nodes must be between 2 and 20")
    existing = LabRecord.load(LAB_NAME)
    if existing is not None and existing.creator_alive():
        print(f"tests/demo: a demo is already running; stop it with: sudo python3 -m tests.lab down {LAB_NAME}",
              file=sys.stderr)
        return 1
    timings = {}
    started = step("building the .deb")
    out = Path("/var/tmp/wgmesh-demo")
    out.mkdir(exist_ok=True)
    try:
        deb = build_deb(out)
    except BuildError as error:
        print(f"tests/demo: {error}", file=sys.stderr)
        return 1
    timings["build the .deb"] = done(started)

    ids = [2 * i for i in range(args.nodes)]
    started = step(f"booting {args.nodes} containers with systemd (IDs {', '.join(map(str, ids))})")
    with Lab(LAB_NAME, kind="container", ids=ids) as lab:
        timings["boot the containers"] = done(started)
        nodes = [lab[i] for i in ids]
        (lab.share_dir / deb.name).write_bytes(deb.read_bytes())

        started = step(f"apt install {deb.name} on every node")
        in_parallel(lambda n: n.run(["apt-get", "install", "-y", "-q", f"/lab/{deb.name}"], timeout=300), nodes)
        timings["install the .deb"] = done(started)

        started = step("wgmesh init on every node (node 0 with --public)")
        in_parallel(lambda n: n.run(["wgmesh", "init", str(n.mesh_id)] + (["--public"] if n.mesh_id == 0 else [])),
                    nodes)
        token = nodes[0].run(["wgmesh", "token"]).stdout.strip()
        timings["init"] = done(started)

        started = step(f"wgmesh connect http://{nodes[0].addresses.v4}:8080 TOKEN on every other node, all at once")
        in_parallel(lambda n: n.run(["wgmesh", "connect", f"http://{nodes[0].addresses.v4}:8080", token]),
                    nodes[1:])
        timings["connect"] = done(started)
        families = (4, 6)  # the lab's nodes have both, so `wgmesh connect` makes a link per family

        started = step("waiting for the full mesh (a link per pair and family, every link up and OSPF Full, every loopback answers)")
        if not wait_until(lambda: not mesh_problems(nodes, families), timeout=120, interval=0.5):
            print("tests/demo: the mesh did not complete within 120 s", file=sys.stderr)
            return 1
        timings["full mesh after the connects"] = done(started)

        for node in nodes:
            print(f"\n--- {node.name}: wgmesh status")
            print(node.run(["wgmesh", "status"]).stdout.rstrip())
        print("\n--- node0: wgmesh graph")
        print(nodes[0].run(["wgmesh", "graph"]).stdout.rstrip())
        print("\ntimings:")
        for name, seconds in timings.items():
            print(f"  {name:<32} {seconds:6.1f} s")
        if args.keep:
            print(f"\nThe mesh stays up until Ctrl-C. In another terminal:\n"
                  f"  sudo python3 -m tests.lab shell {LAB_NAME} node0     # a root shell in node 0\n"
                  f"  sudo python3 -m tests.lab down {LAB_NAME}            # tear it down from anywhere")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        step("tearing the lab down")
    print("no container, namespace, mount or process of the demo is left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
