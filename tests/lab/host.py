"""Host-side primitives the lab modules share: commands, process identity and
termination, mounts and guarded removal.

Stdlib only: the lab must run on a bare Debian before anything is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Every namespace, directory and cgroup the lab creates carries this prefix, so
# `down --all` can sweep leftovers without ever touching anything else.
PREFIX = "wgml-"


def log(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def run(
    argv: list[str],
    check: bool = True,
    timeout: float | None = 60,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a command with captured text output. On timeout the whole process
    group dies, because nsenter/ip-netns-exec children outlive their parent."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(input=input, timeout=timeout)
    except BaseException:
        _kill_group(process.pid)
        stdout, stderr = process.communicate()
        raise
    completed = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    if check and completed.returncode != 0:
        raise subprocess.CalledProcessError(completed.returncode, argv, stdout, stderr)
    return completed


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def describe_failure(error: subprocess.CalledProcessError) -> str:
    return (
        f"{' '.join(map(str, error.cmd))!r} exited {error.returncode}\n"
        f"stdout: {(error.stdout or '').strip()}\nstderr: {(error.stderr or '').strip()}"
    )


# -- processes --------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRef:
    """A pid plus its kernel start time: a recycled pid never matches, so a
    stale state file can never make us signal an unrelated process."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        start = process_start_time(pid)
        return None if start is None else cls(pid, start)

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time and not _is_zombie(self.pid)

    def to_json(self) -> dict:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_json(cls, data: dict) -> ProcessRef:
        return cls(int(data["pid"]), int(data["start_time"]))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children_of(pid: int) -> list[int]:
    return [candidate for candidate in all_pids() if parent_pid(candidate) == pid]


def namespace_pids(pid: int) -> list[int]:
    """The pid as seen from each nested pid namespace, outermost first."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(value) for value in line.split()[1:]]
    except OSError:
        pass
    return []


def pid_namespace_inits(pid: int) -> list[int]:
    """Children of `pid` that are PID 1 of their own pid namespace: what
    systemd-nspawn runs as the container's init."""
    return [child for child in children_of(pid) if namespace_pids(child)[-1:] == [1]]


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def terminate(refs: list[ProcessRef], grace: float = 3.0, first_signal: int = signal.SIGTERM) -> None:
    """first_signal, then SIGKILL for whoever is still there after `grace`."""
    living = [ref for ref in refs if ref.alive()]
    for ref in living:
        _signal(ref, first_signal)
    deadline = time.monotonic() + grace
    while living and time.monotonic() < deadline:
        time.sleep(0.05)
        living = [ref for ref in living if ref.alive()]
    for ref in living:
        _signal(ref, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while living and time.monotonic() < deadline:
        time.sleep(0.05)
        living = [ref for ref in living if ref.alive()]
    if living:
        log(f"processes survived SIGKILL (stuck in the kernel?): {[ref.pid for ref in living]}")


def _signal(ref: ProcessRef, signum: int) -> None:
    # Re-check identity right before signalling: the pid may have been reused.
    if process_start_time(ref.pid) != ref.start_time:
        return
    try:
        os.kill(ref.pid, signum)
    except ProcessLookupError:
        pass


# -- mounts -----------------------------------------------------------------


def _unescape_mount_path(field: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    return field.encode().decode("unicode_escape")


def mount_points() -> list[str]:
    """Mount points of this process's mount namespace, in mount order."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(_unescape_mount_path(line.split()[4]))
    return points


def mounts_under(path: Path | str) -> list[str]:
    base = os.path.realpath(path)
    return [point for point in mount_points() if point == base or point.startswith(base.rstrip("/") + "/")]


def unmount(point: str) -> None:
    if point not in mount_points():
        return
    result = run(["umount", point], check=False)
    if result.returncode != 0 and point in mount_points():
        # Busy (a shell of a lingering process sits in it): detach now,
        # the kernel frees it when the last user leaves.
        log(f"umount {point} failed ({result.stderr.strip()}), detaching lazily")
        run(["umount", "--lazy", point], check=False)


def unmount_all_under(path: Path | str) -> None:
    # Deepest first, repeated because stacked mounts hide each other.
    for _ in range(10):
        points = mounts_under(path)
        if not points:
            return
        for point in sorted(set(points), key=len, reverse=True):
            unmount(point)


def remove_tree(path: Path | str) -> None:
    """rm -rf that refuses to descend into anything still mounted below
    `path` (a leftover /proc or bind mount would otherwise be emptied)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    resolved = os.path.realpath(path)
    if resolved.count("/") < 2:
        raise RuntimeError(f"refusing to remove {resolved}: too close to /")
    unmount_all_under(resolved)
    remaining = mounts_under(resolved)
    if remaining:
        raise RuntimeError(f"refusing to remove {resolved}: still mounted below it: {remaining}")
    shutil.rmtree(resolved, ignore_errors=False)


# -- network namespaces -----------------------------------------------------


def netns_list() -> list[str]:
    result = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    result = run(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def kill_netns_processes(name: str, grace: float = 3.0) -> None:
    refs = [ref for ref in (ProcessRef.of(pid) for pid in netns_pids(name)) if ref is not None]
    if refs:
        terminate(refs, grace=grace)


def delete_netns(name: str) -> None:
    if netns_exists(name):
        result = run(["ip", "netns", "delete", name], check=False)
        if result.returncode != 0:
            log(f"ip netns delete {name}: {result.stderr.strip()}")


def ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip"] if netns is None else ["ip", "-n", netns]
    return run(prefix + list(args), check=check)


def sysctl(netns: str, settings: dict[str, str]) -> None:
    assignments = [f"{key}={value}" for key, value in settings.items()]
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *assignments])


# Containers share the host's user namespace, so one inotify budget serves
# every container's systemd and every wireguard-go in all of them (one each):
# the default 128 runs out at a handful of nodes with a few links each.
INOTIFY_INSTANCES = 8192


def raise_inotify_limit(minimum: int = INOTIFY_INSTANCES) -> None:
    """Raise fs.inotify.max_user_instances to minimum (never lowers it)."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(path.read_text()) < minimum:
        log(f"raising fs.inotify.max_user_instances to {minimum} (one per wireguard-go in every container)")
        path.write_text(f"{minimum}\n")


# -- cgroups ------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """The hierarchies nspawn/systemd track processes in: the v1 name=systemd
    one (hybrid hosts) and the cgroup2 one."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = (after.split() + ["", "", ""])[:3]
        point = Path(before.split()[4])
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            found.append(point)
    return found


def remove_cgroup_tree(path: Path, keep_top: bool = False) -> None:
    if not path.is_dir():
        return
    for directory, subdirs, _ in os.walk(path, topdown=False):
        if keep_top and Path(directory) == path:
            continue
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
