"""python3 -m tests.lab {list,down,shell,up,rootfs} (run from the project root, as root)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from . import rootfs
from .containers import CONTAINER_ENV
from .host import PREFIX, ProcessRef, netns_list, pid_namespace_inits
from .lab import Lab, install_exit_handlers
from .resources import LabRecord, destroy, recorded_labs, sweep_prefixed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab", description="wgmesh test lab")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="labs recorded in state files, and stray wgml- namespaces")

    down = commands.add_parser("down", help="tear down labs from their state files")
    down.add_argument("names", nargs="*", metavar="LAB")
    down.add_argument("--all", action="store_true", help=f"every recorded lab, then anything named {PREFIX}*")

    shell = commands.add_parser("shell", help="interactive shell inside a node")
    shell.add_argument("lab")
    shell.add_argument("node", help="node name (node2) or mesh id (2)")

    up = commands.add_parser("up", help="create a lab and keep it until Ctrl-C (explore it with `shell`)")
    up.add_argument("name")
    up.add_argument("--kind", choices=["netns", "container"], default="netns")
    up.add_argument("--ids", default="0,2,4", help="comma-separated mesh ids (default 0,2,4)")

    build = commands.add_parser("rootfs", help="build the container rootfs cache if missing")
    build.add_argument("--rebuild", action="store_true", help="build again even if cached")
    build.add_argument("--prune", action="store_true", help="remove cached roots of other package lists")

    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the lab needs root")
    # SIGTERM/SIGHUP unwind like Ctrl-C, so half-built things get removed.
    install_exit_handlers()
    return {"list": cmd_list, "down": cmd_down, "shell": cmd_shell, "up": cmd_up, "rootfs": cmd_rootfs}[
        args.command
    ](args)


def cmd_list(args) -> int:
    listed_namespaces = set()
    for name in recorded_labs():
        record = LabRecord.load(name)
        if record is None:
            continue
        creator = record.data["creator"]["pid"]
        status = "live" if record.creator_alive() else "ORPHANED (creator gone: `down` it)"
        print(f"{name}  kind={record.data['kind']}  creator={creator} {status}")
        listed_namespaces.update(record.data["netns"])
        for node_name, node in sorted(record.data["nodes"].items(), key=lambda item: item[1].get("mesh_id", 0)):
            print(f"  {node_name}  id={node.get('mesh_id')}  netns={node.get('netns')}  {_node_state(node)}")
    strays = [name for name in netns_list() if name.startswith(PREFIX) and name not in listed_namespaces]
    if strays:
        print(f"namespaces in no state file (`down --all` removes them): {' '.join(strays)}")
    if not recorded_labs() and not strays:
        print("no labs")
    return 0


def _node_state(node: dict) -> str:
    if node.get("kind") == "netns":
        holder = node.get("holder")
        return "up" if holder and ProcessRef.from_json(holder).alive() else "holder gone"
    nspawn = node.get("nspawn")
    return "running" if nspawn and ProcessRef.from_json(nspawn).alive() else "off"


def cmd_down(args) -> int:
    if not args.names and not args.all:
        print("name a lab, or --all", file=sys.stderr)
        return 2
    names = recorded_labs() if args.all else args.names
    failed = False
    for name in names:
        record = LabRecord.load(name)
        if record is None:
            print(f"{name}: no state file")
            failed = True
            continue
        if record.creator_alive():
            print(f"{name}: its creator (pid {record.data['creator']['pid']}) is still running; tearing down anyway")
        problems = destroy(record)
        print(f"{name}: " + ("down" if not problems else f"incomplete: {problems}"))
        failed |= bool(problems)
    if args.all:
        found = sweep_prefixed()
        if found:
            print("removed unrecorded leftovers: " + "; ".join(found))
    return 1 if failed else 0


def cmd_shell(args) -> int:
    record = LabRecord.load(args.lab)
    if record is None:
        print(f"no lab {args.lab!r} (see `list`)", file=sys.stderr)
        return 2
    nodes = record.data["nodes"]
    node_name = args.node if args.node in nodes else f"node{args.node}"
    node = nodes.get(node_name)
    if node is None:
        print(f"lab {args.lab} has no node {args.node!r}; it has {sorted(nodes)}", file=sys.stderr)
        return 2
    prompt = f"[{args.lab}/{node_name}] \\w# "
    if node["kind"] == "netns":
        holder = ProcessRef.from_json(node["holder"])
        if not holder.alive():
            print(f"{node_name}: its holder process is gone", file=sys.stderr)
            return 1
        argv = ["nsenter", "-t", str(holder.pid), "-n", "-m", "--wd=/", "--", "bash", "--norc", "-i"]
        env = {**os.environ, "PS1": prompt}
    else:
        leader = _container_leader(node)
        if leader is None:
            print(f"{node_name}: the container is not running", file=sys.stderr)
            return 1
        argv = ["nsenter", "-t", str(leader), "--all", "--", "bash", "--norc", "-i"]
        env = {**CONTAINER_ENV, "TERM": os.environ.get("TERM", "xterm"), "PS1": prompt}
    os.execvpe(argv[0], argv, env)


def _container_leader(node: dict) -> int | None:
    nspawn = node.get("nspawn")
    if not nspawn or not ProcessRef.from_json(nspawn).alive():
        return None
    inits = pid_namespace_inits(nspawn["pid"])
    return inits[0] if inits else None


def cmd_up(args) -> int:
    ids = [int(part) for part in args.ids.split(",") if part.strip()]
    with Lab(args.name, kind=args.kind, ids=ids) as lab:
        for node in lab.nodes.values():
            boot = f"  booted in {lab.boot_seconds[node.name]:.1f} s" if node.name in lab.boot_seconds else ""
            print(f"{node.name}  id={node.mesh_id}  {node.addresses.v4}  {node.addresses.v6}  netns={node.netns}{boot}")
        print(f"lab {args.name} is up; `python3 -m tests.lab shell {args.name} NODE`; Ctrl-C tears it down")
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("tearing down")
    return 0


def cmd_rootfs(args) -> int:
    started = time.monotonic()
    path = rootfs.ensure_rootfs(rebuild=args.rebuild)
    print(f"{path} ({time.monotonic() - started:.0f} s)")
    if args.prune:
        rootfs.prune(keep=path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
