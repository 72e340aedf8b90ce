"""A "netns node": a network namespace plus a private mount namespace, where
/etc/wgmesh, /var/lib/wgmesh and /run are the node's own and the rest of
the file system (the installed wgmesh, bird, wireguard-go) is the host's.

A private /run matters beyond wgmesh's own files: /var/run is a symlink to
/run, so wireguard-go's UAPI sockets (/var/run/wireguard/IFNAME.sock) and
bird's control socket are per node, and two nodes may both have a "wg0".
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from .host import PREFIX, ProcessRef, log, netns_pids, run
from .resources import ensure_host_mountpoint
from .underlay import UnderlayAddresses, wan_interface

# Host mountpoint -> the node's directory name under its scratch dir.
PRIVATE_DIRS = {"/etc/wgmesh": "etc-wgmesh", "/var/lib/wgmesh": "var-lib-wgmesh"}

# The holder keeps the mount namespace alive and is what nsenter targets.
# `ip netns exec` already gave it a fresh /sys (this netns's interfaces).
_HOLDER_SCRIPT = """
set -e
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock
mount --bind "$1" /etc/wgmesh
mount --bind "$2" /var/lib/wgmesh
echo ready
exec sleep infinity
"""

HOLDER_START_TIMEOUT = 10


def _as_argv(command: list[str] | str) -> list[str]:
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


class NetnsNode:
    kind = "netns"

    def __init__(self, lab, name: str, mesh_id: int):
        self.lab = lab
        self.name = name
        self.mesh_id = mesh_id
        self.netns = f"{PREFIX}{lab.name}-{name}"
        self.root = Path(lab.workdir) / name
        self.files_dir = self.root / PRIVATE_DIRS["/etc/wgmesh"]
        self.state_dir = self.root / PRIVATE_DIRS["/var/lib/wgmesh"]
        self.holder: ProcessRef | None = None
        self._holder_process: subprocess.Popen | None = None
        self.addresses: UnderlayAddresses | None = None
        self._create()

    def __repr__(self) -> str:
        return f"<NetnsNode {self.name} id={self.mesh_id} netns={self.netns}>"

    def _create(self) -> None:
        record = self.lab.record
        record.add_netns(self.netns)
        run(["ip", "netns", "add", self.netns])
        self.addresses = self.lab.underlay.attach(self.netns, self.mesh_id)
        self.files_dir.mkdir(parents=True)
        self.state_dir.mkdir(parents=True)
        for mountpoint in PRIVATE_DIRS:
            ensure_host_mountpoint(mountpoint)
        self._start_holder()
        record.set_node(
            self.name,
            kind=self.kind,
            mesh_id=self.mesh_id,
            netns=self.netns,
            holder=self.holder.to_json(),
            files_dir=str(self.files_dir),
            state_dir=str(self.state_dir),
        )

    def _start_holder(self) -> None:
        argv = [
            "ip", "netns", "exec", self.netns,
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _HOLDER_SCRIPT, "holder", str(self.files_dir), str(self.state_dir),
        ]  # fmt: skip
        # `ip netns exec`, unshare and sh each exec the next: the pid is the
        # final `sleep`'s. Own session: a Ctrl-C meant for the test must not
        # kill it before the teardown has run.
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._holder_process = process
        ref = ProcessRef.of(process.pid)
        if ref is not None:
            self.holder = ref
            self.lab.record.add_process(ref, role="holder", node=self.name)
        output = _read_until_ready(process, HOLDER_START_TIMEOUT)
        if output is not None or ref is None:
            process.kill()
            process.wait()
            raise RuntimeError(f"node {self.name}: mount namespace holder failed: {output}")
        process.stdout.close()

    # -- running things inside ------------------------------------------------

    def command(self, argv: list[str] | str, cwd: str | None = None) -> list[str]:
        """The argv that runs `argv` inside this node (for callers that need
        their own Popen or a terminal)."""
        assert self.holder is not None
        return [
            "nsenter", "-t", str(self.holder.pid), "-n", "-m",
            f"--wd={cwd or _usable_cwd()}", "--", *_as_argv(argv),
        ]  # fmt: skip

    def run(
        self,
        argv: list[str] | str,
        check: bool = True,
        timeout: float | None = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess:
        """`argv` inside the node; a string runs under /bin/sh -c. `env` adds to
        (does not replace) the host environment, so PATH still finds wgmesh."""
        return run(self.command(argv, cwd), check=check, timeout=timeout, input=input, env=_merged_env(env))

    def popen(self, argv: list[str] | str, env: dict[str, str] | None = None, cwd: str | None = None, **kwargs):
        """A long-running process inside the node. The lab's teardown kills it
        with everything else in the node's netns."""
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.command(argv, cwd), env=_merged_env(env), **kwargs)

    def host_path(self, path: str) -> Path:
        """Where the node's `path` is visible from the host."""
        for mountpoint, directory in PRIVATE_DIRS.items():
            if path == mountpoint or path.startswith(mountpoint + "/"):
                return self.root / directory / os.path.relpath(path, mountpoint)
        # /proc/PID/root resolves through the holder's mount namespace.
        return Path(f"/proc/{self.holder.pid}/root") / path.lstrip("/")

    @property
    def wan_interface(self) -> str:
        return wan_interface(self.mesh_id)

    def pids(self) -> list[int]:
        return netns_pids(self.netns)


def _merged_env(extra: dict[str, str] | None) -> dict[str, str] | None:
    return None if extra is None else {**os.environ, **extra}


def _usable_cwd() -> str:
    # Inside the node /run is another file system; fall back to / there.
    cwd = os.getcwd()
    return "/" if cwd == "/run" or cwd.startswith("/run/") else cwd


def _read_until_ready(process: subprocess.Popen, timeout: float) -> str | None:
    """None once the holder printed "ready", else what it printed instead."""
    collected = ""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = os.read(fd, 4096).decode(errors="replace")
        if not chunk:
            return collected or f"exited with {process.wait()}"
        collected += chunk
        if "ready\n" in collected:
            extra = collected.replace("ready\n", "").strip()
            if extra:
                log(f"holder said: {extra}")
            return None
    return collected + f" (no 'ready' after {timeout} s)"
