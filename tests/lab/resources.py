"""What a lab created, recorded in /run/wgmesh-lab/<lab>.json before (or right
after) each creation, and the teardown that works from that record alone, so
`python3 -m tests.lab down` can clean up after a creator that died.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

from .host import (
    PREFIX,
    ProcessRef,
    all_pids,
    cgroup_hierarchies,
    cmdline,
    delete_netns,
    log,
    netns_exists,
    netns_list,
    netns_pids,
    pid_namespace_inits,
    remove_cgroup_tree,
    remove_tree,
    terminate,
    unmount,
    unmount_all_under,
)

LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")


def state_dir() -> Path:
    return Path(os.environ.get("WGMESH_LAB_STATE", "/run/wgmesh-lab"))


def work_base() -> Path:
    """Parent of every lab's scratch dirs (overlays, per-node /etc/wgmesh)."""
    return Path(os.environ.get("WGMESH_LAB_TMP", "/var/tmp/wgmesh-lab"))


def logs_base() -> Path:
    """Console logs live here and outlive the lab, for post-mortems."""
    return Path(os.environ.get("WGMESH_LAB_LOGS", "/var/tmp/wgmesh-lab-logs"))


@contextlib.contextmanager
def registry_lock():
    """Serialises lab creation/teardown across processes (state files and
    the shared host mountpoints)."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LabExists(RuntimeError):
    pass


class LabRecord:
    """Mirror of a lab's resources; every change is written to disk at once."""

    def __init__(self, data: dict):
        self.data = data
        # Containers boot in threads that record their init pids.
        self._lock = threading.RLock()

    # -- lifecycle ----------------------------------------------------------

    @classmethod
    def claim(cls, name: str, kind: str) -> LabRecord:
        """A fresh record for `name`. A record left by a dead creator is torn
        down first; one whose creator still runs is an error."""
        if not LAB_NAME.match(name):
            raise ValueError(f"lab name {name!r} must match {LAB_NAME.pattern} (it goes into netns/ifnames)")
        with registry_lock():
            existing = cls.load(name)
            if existing is not None:
                if existing.creator_alive():
                    raise LabExists(f"lab {name!r} is in use by pid {existing.data['creator']['pid']}")
                log(f"lab {name!r}: tearing down what a dead run left behind")
                problems = destroy(existing, locked=True)
                if problems:
                    raise RuntimeError(f"could not clean up stale lab {name!r}: {problems}")
            creator = ProcessRef.of(os.getpid())
            record = cls(
                {
                    "name": name,
                    "kind": kind,
                    "created": time.time(),
                    "creator": creator.to_json(),
                    "netns": [],
                    "processes": [],
                    "mounts": [],
                    "dirs": [],
                    "cgroups": [],
                    "nodes": {},
                }
            )
            record.save()
            return record

    @classmethod
    def load(cls, name: str) -> LabRecord | None:
        try:
            return cls(json.loads(state_file(name).read_text()))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as error:
            raise RuntimeError(f"corrupt state file {state_file(name)}: {error}") from None

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def path(self) -> Path:
        return state_file(self.name)

    def creator_alive(self) -> bool:
        return ProcessRef.from_json(self.data["creator"]).alive()

    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(temporary, self.path)

    # -- recording ----------------------------------------------------------

    def add_netns(self, name: str) -> None:
        assert name.startswith(PREFIX), name
        self._change(lambda: self.data["netns"].append(name))

    def add_process(self, ref: ProcessRef, role: str, node: str | None = None) -> None:
        self._change(lambda: self.data["processes"].append({**ref.to_json(), "role": role, "node": node}))

    def forget_process(self, ref: ProcessRef) -> None:
        def drop() -> None:
            self.data["processes"] = [entry for entry in self.data["processes"] if ProcessRef.from_json(entry) != ref]

        self._change(drop)

    def add_mount(self, point: str) -> None:
        self._change(lambda: self.data["mounts"].append(point))

    def forget_mount(self, point: str) -> None:
        def drop() -> None:
            self.data["mounts"] = [entry for entry in self.data["mounts"] if entry != point]

        self._change(drop)

    def add_dir(self, path: Path | str) -> None:
        self._change(lambda: self.data["dirs"].append(str(path)))

    def add_cgroup(self, path: str) -> None:
        assert os.path.basename(path).startswith(PREFIX), path
        self._change(lambda: self.data["cgroups"].append(path))

    def set_node(self, name: str, **info) -> None:
        self._change(lambda: self.data["nodes"].setdefault(name, {}).update(info))

    def _change(self, mutate) -> None:
        with self._lock:
            mutate()
            self.save()


def state_file(name: str) -> Path:
    return state_dir() / f"{name}.json"


def recorded_labs() -> list[str]:
    directory = state_dir()
    if not directory.is_dir():
        return []
    return sorted(entry.stem for entry in directory.glob("*.json") if not entry.name.startswith("."))


# -- host mountpoints shared by all labs ------------------------------------
# A netns node bind-mounts over /etc/wgmesh and /var/lib/wgmesh, which must
# exist on the host. Removing such a dir detaches every mount on it in every
# other namespace, so it goes only when no lab at all is left.


def _created_mountpoints_file() -> Path:
    return state_dir() / ".created-mountpoints.json"


def _created_mountpoints() -> list[str]:
    try:
        return json.loads(_created_mountpoints_file().read_text())
    except FileNotFoundError:
        return []


def ensure_host_mountpoint(path: str) -> None:
    with registry_lock():
        if os.path.isdir(path):
            return
        os.makedirs(path)
        created = _created_mountpoints()
        created.append(path)
        _created_mountpoints_file().write_text(json.dumps(created))


def _remove_created_mountpoints_if_unused() -> None:
    if recorded_labs():
        return
    kept = []
    for path in _created_mountpoints():
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            log(f"leaving {path}: {error.strerror} (something outside the lab wrote into it)")
            kept.append(path)
    if kept:
        _created_mountpoints_file().write_text(json.dumps(kept))
    else:
        _created_mountpoints_file().unlink(missing_ok=True)


# -- teardown -----------------------------------------------------------------


def destroy(record: LabRecord, locked: bool = False) -> list[str]:
    """Tear down everything `record` lists; returns what could not be undone
    (the state file is kept in that case, so `down` can try again)."""
    context = contextlib.nullcontext() if locked else registry_lock()
    with context, _signals_deferred():
        problems = _destroy(record)
        if not problems:
            record.path.unlink(missing_ok=True)
            _remove_created_mountpoints_if_unused()
        return problems


def _destroy(record: LabRecord) -> list[str]:  # noqa: C901 - one attempt per kind of resource
    problems: list[str] = []
    data = record.data

    def attempt(what: str, action, *args) -> None:
        try:
            action(*args)
        except Exception as error:  # noqa: BLE001 - teardown must go on whatever fails
            problems.append(f"{what}: {error}")
            log(f"teardown of lab {record.name}: {what}: {error}")

    processes = [(ProcessRef.from_json(entry), entry["role"]) for entry in data["processes"]]
    # Killing a container's init ends its whole pid namespace at once,
    # far faster than asking every service to stop.
    inits = [ref for ref, role in processes if role == "container-init"]
    for ref, role in processes:
        if role == "nspawn" and ref.alive():
            # An init still booting when its creator died was never recorded.
            inits += [init for init in map(ProcessRef.of, pid_namespace_inits(ref.pid)) if init is not None]
    attempt("container inits", terminate, inits, 0.0, signal.SIGKILL)
    attempt("nspawn", terminate, [ref for ref, role in processes if role == "nspawn"], 5.0)
    in_namespaces = []
    for netns in data["netns"]:
        in_namespaces += [ref for ref in map(ProcessRef.of, netns_pids(netns)) if ref is not None]
    attempt("processes in the lab's namespaces", terminate, in_namespaces, 2.0)
    attempt("other processes", terminate, [ref for ref, _ in processes], 2.0)

    for cgroup in reversed(data.get("cgroups", [])):
        attempt(f"cgroup {cgroup}", remove_cgroup_tree, Path(cgroup))
    for point in reversed(data["mounts"]):
        attempt(f"umount {point}", unmount, point)
    for netns in reversed(data["netns"]):
        attempt(f"netns {netns}", delete_netns, netns)
        if netns_exists(netns):
            problems.append(f"netns {netns} still exists")
    for directory in reversed(data["dirs"]):
        attempt(f"remove {directory}", remove_tree, directory)
    return problems


@contextlib.contextmanager
def _signals_deferred():
    """A second Ctrl-C must not abort a teardown halfway; it is delivered
    once the teardown is over."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda number, frame: pending.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:
            os.kill(os.getpid(), signum)


def sweep_prefixed() -> list[str]:  # noqa: C901 - one sweep per kind of resource
    """Remove lab resources that no state file lists but that carry the lab
    prefix: namespaces, nspawn processes on them, mounts and dirs under the
    lab's work base. Returns what was found."""
    found = []
    namespaces = [name for name in netns_list() if name.startswith(PREFIX)]
    nspawns = []
    for pid in all_pids():
        argv = cmdline(pid)
        if argv and os.path.basename(argv[0]) == "systemd-nspawn" and any(
            arg.startswith(f"--network-namespace-path=/run/netns/{PREFIX}") for arg in argv
        ):
            ref = ProcessRef.of(pid)
            if ref is not None:
                nspawns.append(ref)
    if nspawns:
        found.append(f"nspawn pids {[ref.pid for ref in nspawns]}")
        # SIGKILL their container inits first (children in a pid namespace).
        inits = []
        for ref in nspawns:
            inits += [init for init in map(ProcessRef.of, pid_namespace_inits(ref.pid)) if init is not None]
        terminate(inits, 0.0, signal.SIGKILL)
        terminate(nspawns, 5.0)
    in_namespaces = []
    for name in namespaces:
        in_namespaces += [ref for ref in map(ProcessRef.of, netns_pids(name)) if ref is not None]
    if in_namespaces:
        found.append(f"processes {[ref.pid for ref in in_namespaces]}")
        terminate(in_namespaces, 2.0)
    base = work_base()
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(PREFIX):
                found.append(f"dir {entry}")
                unmount_all_under(entry)
    for name in namespaces:
        found.append(f"netns {name}")
        delete_netns(name)
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(PREFIX):
                remove_tree(entry)
    for hierarchy in cgroup_hierarchies():
        for cgroup in sorted(hierarchy.glob(f"{PREFIX}*")):
            if cgroup.is_dir():
                found.append(f"cgroup {cgroup}")
                remove_cgroup_tree(cgroup)
    with registry_lock():
        _remove_created_mountpoints_if_unused()
    return found
