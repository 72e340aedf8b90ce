"""Container nodes: the cached Debian rootfs booted with real systemd by
systemd-nspawn, in a netns wired to the underlay.

Each container runs on its own overlay of the cached rootfs (mounted here,
on the host, so its files are readable while it is off); the upper dir
lives as long as the lab, so a poweroff and a second boot keep its writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

from .host import (
    PREFIX,
    ProcessRef,
    cgroup_hierarchies,
    log,
    pid_namespace_inits,
    remove_cgroup_tree,
    run,
    terminate,
)
from .underlay import UnderlayAddresses, wan_interface

CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
}

SHARE_MOUNTPOINT = "/lab"

# nspawn puts /proc/sys read-only; this keeps /proc/sys/net writable, which a
# mesh node needs (forwarding). --network-namespace-path alone does not.
# A node of Lab(read_only_proc_sys=...) boots without it, as nspawn's
# default (and unprivileged LXC) would: a node that cannot forward.
_NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}

# Without a systemd on the host, nspawn --keep-unit creates its "supervisor"
# and "payload" cgroups under its own cgroup: the root, shared by every
# container, so their systemds would manage each other's services. Each
# container's nspawn therefore first moves itself into a cgroup of its own.
_JOIN_CGROUPS_THEN_EXEC = 'for procs in $CGROUP_PROCS; do echo $$ > "$procs"; done; unset CGROUP_PROCS; exec "$@"'


class ContainerError(RuntimeError):
    pass


class Container:
    kind = "container"

    def __init__(self, lab, name: str, mesh_id: int):
        self.lab = lab
        self.name = name
        self.mesh_id = mesh_id
        self.proc_sys_writable = mesh_id not in getattr(lab, "read_only_proc_sys", ())
        self.machine = f"{PREFIX}{lab.name}-{name}"
        self.netns = self.machine
        self.root = Path(lab.workdir) / name
        self.upper = self.root / "upper"
        self.overlay_work = self.root / "work"
        self.merged = self.root / "merged"
        self.console_log = Path(lab.logs_dir) / f"{name}.console.log"
        # Stable across reboots (journal, machine-id), distinct per container.
        self.uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"wgmesh-lab:{lab.name}:{name}")
        self.cgroups = [hierarchy / self.machine for hierarchy in cgroup_hierarchies()]
        self.addresses: UnderlayAddresses | None = None
        self.boots = 0
        self.boot_seconds: float | None = None
        self._nspawn: subprocess.Popen | None = None
        self._nspawn_ref: ProcessRef | None = None
        self._leader: ProcessRef | None = None
        self._boot_started = 0.0
        self._lock = threading.Lock()
        self._create()

    def __repr__(self) -> str:
        return f"<Container {self.name} id={self.mesh_id} {'running' if self.is_up() else 'off'}>"

    # -- creation -------------------------------------------------------------

    def _create(self) -> None:
        record = self.lab.record
        record.add_netns(self.netns)
        run(["ip", "netns", "add", self.netns])
        self.addresses = self.lab.underlay.attach(self.netns, self.mesh_id)
        for directory in (self.upper, self.overlay_work, self.merged):
            directory.mkdir(parents=True)
        record.add_mount(str(self.merged))
        run(
            [
                "mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={self.lab.rootfs},upperdir={self.upper},workdir={self.overlay_work}",
                str(self.merged),
            ]
        )  # fmt: skip
        # nspawn's --hostname alone is overridden by /etc/hostname at boot.
        (self.merged / "etc/hostname").write_text(f"{self.name}\n")
        # minbase has no /etc/hosts and no nss-myhostname to resolve our name.
        (self.merged / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
        for cgroup in self.cgroups:
            record.add_cgroup(str(cgroup))
            cgroup.mkdir(exist_ok=True)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.console_log.write_text("")
        record.set_node(
            self.name,
            kind=self.kind,
            mesh_id=self.mesh_id,
            netns=self.netns,
            machine=self.machine,
            merged=str(self.merged),
            console_log=str(self.console_log),
        )

    # -- lifecycle ------------------------------------------------------------

    def nspawn_argv(self) -> list[str]:
        return [
            "systemd-nspawn",
            f"--directory={self.merged}",
            f"--machine={self.machine}",
            f"--hostname={self.name}",
            f"--uuid={self.uuid}",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{self.netns}",
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BROADCAST",
            "--console=read-only",
            "--link-journal=no",
            f"--bind-ro={self.lab.share_dir}:{SHARE_MOUNTPOINT}",
        ]

    def boot(self) -> None:
        """Start booting; wait_running() waits for the end of it."""
        with self._lock:
            if self.is_up():
                raise ContainerError(f"{self.name} is already running")
            for cgroup in self.cgroups:
                # nspawn leaves supervisor/ and payload/ behind at exit.
                remove_cgroup_tree(cgroup, keep_top=True)
                cgroup.mkdir(exist_ok=True)
            self.boots += 1
            self.boot_seconds = None
            self._leader = None
            if not self.proc_sys_writable:
                # A new namespace copies IPv4 forwarding from the host's: a
                # node that cannot write /proc/sys must meet it off, as a
                # fresh machine or an unprivileged LXC would.
                for key in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
                    subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-qw", key], check=True,
                                   capture_output=True, timeout=30)
            with open(self.console_log, "a") as console:
                console.write(f"\n===== wgmesh-lab: boot {self.boots} of {self.name} at {time.ctime()} =====\n")
                console.flush()
                env = {
                    **{k: v for k, v in os.environ.items() if k not in _NSPAWN_ENV},
                    **(_NSPAWN_ENV if self.proc_sys_writable else {}),
                    # The console log is read in files and CI logs: no ANSI colours.
                    "TERM": "dumb",
                    "CGROUP_PROCS": " ".join(str(cgroup / "cgroup.procs") for cgroup in self.cgroups),
                }
                self._boot_started = time.monotonic()
                # Own session: Ctrl-C goes to the lab, which then tears down
                # in order, instead of to nspawn directly.
                self._nspawn = subprocess.Popen(
                    ["/bin/sh", "-c", _JOIN_CGROUPS_THEN_EXEC, "nspawn", *self.nspawn_argv()],
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    start_new_session=True,
                )
            self._nspawn_ref = ProcessRef.of(self._nspawn.pid)
            if self._nspawn_ref is not None:
                self.lab.record.add_process(self._nspawn_ref, role="nspawn", node=self.name)
                self.lab.record.set_node(self.name, nspawn=self._nspawn_ref.to_json())

    def is_up(self) -> bool:
        """nspawn is running (booting, running or shutting down)."""
        return self._nspawn is not None and self._nspawn.poll() is None

    def leader_pid(self, timeout: float = 10) -> int:
        """The host pid of the container's systemd (its PID 1)."""
        if self._leader is not None and self._leader.alive():
            return self._leader.pid
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_up():
                raise ContainerError(f"{self.name}: nspawn exited ({self._exit_summary()})")
            for child in pid_namespace_inits(self._nspawn.pid):
                ref = ProcessRef.of(child)
                if ref is not None:
                    self._leader = ref
                    self.lab.record.add_process(ref, role="container-init", node=self.name)
                    self.lab.record.set_node(self.name, leader=ref.to_json())
                    return ref.pid
            if time.monotonic() > deadline:
                raise ContainerError(f"{self.name}: no container init under nspawn {self._nspawn.pid} after {timeout} s")
            time.sleep(0.05)

    def system_state(self) -> str:
        result = self.run(["systemctl", "is-system-running"], check=False, timeout=15)
        return result.stdout.strip() or result.stderr.strip()

    def wait_running(self, timeout: float = 120) -> float:
        """Wait until `systemctl is-system-running` says running; returns the
        seconds since boot(). "degraded" raises with `systemctl --failed`."""
        deadline = self._boot_started + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.is_up():
                raise ContainerError(f"{self.name}: nspawn exited during boot ({self._exit_summary()})")
            try:
                self.leader_pid(timeout=max(0.1, deadline - time.monotonic()))
                state = self.system_state()
            except (ContainerError, subprocess.TimeoutExpired) as error:
                state = str(error)
                if not self.is_up():
                    continue
            if state == "running":
                self.boot_seconds = time.monotonic() - self._boot_started
                return self.boot_seconds
            if state == "degraded":
                failed = self.run(["systemctl", "--failed", "--no-pager", "--no-legend", "--plain"], check=False)
                details = self.run(
                    ["sh", "-c", ("for unit in $(systemctl --failed --no-legend --plain | awk '{print $1}'); do "
                                  "systemctl status --no-pager --lines=15 \"$unit\"; done")],
                    check=False,
                )  # fmt: skip
                message = f"{self.name} booted degraded; systemctl --failed:\n{failed.stdout}\n{details.stdout}"
                log(message)
                raise ContainerError(message)
            time.sleep(0.2)
        raise ContainerError(
            f"{self.name}: not running after {timeout} s (last state: {state!r}); console log {self.console_log}:\n"
            + self.console_tail()
        )

    def poweroff(self, timeout: float = 60) -> int:
        """Orderly shutdown from inside; returns nspawn's exit status."""
        if not self.is_up():
            return self._nspawn.returncode if self._nspawn else 0
        # systemctl may be cut off while the system goes down: ignore its status.
        try:
            self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            status = self._nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: no poweroff after {timeout} s, killing it")
            self.kill()
            status = self._nspawn.returncode
        self._forget_processes()
        return status

    def kill(self) -> None:
        """Pull the plug: SIGKILL to the container's init ends its whole pid
        namespace; then nspawn exits by itself."""
        if self._leader is None and self.is_up():
            # nspawn's own SIGTERM handling would shut down gracefully, and a
            # SIGKILLed nspawn would orphan the init: find the init first.
            inits = [ProcessRef.of(pid) for pid in pid_namespace_inits(self._nspawn.pid)]
            self._leader = next((ref for ref in inits if ref is not None), None)
        if self._leader is not None:
            terminate([self._leader], grace=0, first_signal=signal.SIGKILL)
        if self._nspawn_ref is not None:
            terminate([self._nspawn_ref], grace=5)
        if self._nspawn is not None:
            self._nspawn.wait()
        self._forget_processes()

    def _forget_processes(self) -> None:
        for ref in (self._leader, self._nspawn_ref):
            if ref is not None:
                self.lab.record.forget_process(ref)
        self._leader = None
        self._nspawn_ref = None

    # -- running things inside --------------------------------------------------

    def command(self, argv: list[str] | str) -> list[str]:
        """The argv that runs `argv` in all of the container's namespaces."""
        if isinstance(argv, str):
            argv = ["/bin/sh", "-c", argv]
        return ["nsenter", "-t", str(self.leader_pid()), "--all", "--", *argv]

    def run(
        self,
        argv: list[str] | str,
        check: bool = True,
        timeout: float | None = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """`argv` inside the container as root, with a clean Debian
        environment (`env` adds to it); a string runs under /bin/sh -c.
        It runs outside the container's cgroups, with the host's capabilities:
        use `systemd-run` to get what a unit would get."""
        return run(self.command(argv), check=check, timeout=timeout, input=input, env={**CONTAINER_ENV, **(env or {})})

    def popen(self, argv: list[str] | str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.command(argv), env={**CONTAINER_ENV, **(env or {})}, **kwargs)

    def journal(self, unit: str | None = None, boot: int = 0, lines: int | None = None) -> str:
        argv = ["journalctl", "--no-pager", "-b", str(boot)]
        if unit:
            argv += ["-u", unit]
        if lines:
            argv += ["-n", str(lines)]
        return self.run(argv, check=False, timeout=30).stdout

    def host_path(self, path: str) -> Path:
        """Where the container's `path` is visible from the host: through its
        init while it runs (so /run, /tmp mounts are right), else the overlay."""
        if self.is_up() and self._leader is not None and self._leader.alive():
            return Path(f"/proc/{self._leader.pid}/root") / path.lstrip("/")
        return self.merged / path.lstrip("/")

    @property
    def files_dir(self) -> Path:
        return self.host_path("/etc/wgmesh")

    @property
    def wan_interface(self) -> str:
        return wan_interface(self.mesh_id)

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _exit_summary(self) -> str:
        code = self._nspawn.poll() if self._nspawn else None
        return f"exit status {code}; console log {self.console_log}:\n{self.console_tail()}"


def boot_in_parallel(containers: list[Container], timeout: float = 180) -> dict[str, float]:
    """Boot all, wait for all; returns seconds to `running` per container.
    nspawn starts are sequential (cheap), the waits run in threads."""
    for container in containers:
        container.boot()
    results: dict[str, float] = {}
    errors: dict[str, BaseException] = {}

    def wait(container: Container) -> None:
        try:
            results[container.name] = container.wait_running(timeout)
        except BaseException as error:  # noqa: BLE001 - reported below, with the others'
            errors[container.name] = error

    threads = [threading.Thread(target=wait, args=(container,), daemon=True) for container in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise ContainerError(
            "containers did not boot: " + "; ".join(f"{name}: {error}" for name, error in sorted(errors.items()))
        )
    return results
