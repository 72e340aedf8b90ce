"""A lab: the underlay plus one node per mesh id, netns nodes or containers.

    with Lab("demo", kind="netns", ids=[0, 2, 4]) as lab:
        lab.node(2).run(["ping", "-c1", lab.node(4).addresses.v4])

Whatever happens (exception, Ctrl-C, SIGTERM, interpreter exit) the lab is
torn down; if the process is SIGKILLed, `python3 -m tests.lab down NAME`
finishes the job from /run/wgmesh-lab/NAME.json.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Self

from .containers import Container, boot_in_parallel
from .host import PREFIX, log, raise_inotify_limit
from .netns_nodes import NetnsNode
from .resources import LabRecord, destroy, logs_base, work_base
from .rootfs import ensure_rootfs
from .underlay import Underlay

KINDS = {"netns": NetnsNode, "container": Container}

_live_labs: list[Lab] = []
_handlers_installed = False


class Lab:
    def __init__(
        self,
        name: str,
        kind: str = "netns",
        ids: list[int] | tuple[int, ...] = (0, 2, 4),
        boot: bool = True,
        boot_timeout: float = 180,
        rootfs: Path | None = None,
        share_dir: Path | None = None,
        keep_logs: bool = False,
        read_only_proc_sys: list[int] | tuple[int, ...] = (),
    ):
        """kind="container" boots all nodes in parallel on entry unless boot=False.
        `share_dir` (default: a fresh dir, `lab.share_dir`) appears read-only at
        /lab in every container. Console logs (`lab.logs_dir`) are kept when
        the lab ends with an exception, or always with keep_logs=True.
        Containers of the ids in `read_only_proc_sys` boot with nspawn's
        default read-only /proc/sys (/proc/sys/net included): they cannot
        switch forwarding on."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate mesh ids in {ids}")
        self.name = name
        self.kind = kind
        self.ids = list(ids)
        self.boot_on_start = boot
        self.boot_timeout = boot_timeout
        self.rootfs = rootfs
        self.share_dir = share_dir
        self.keep_logs = keep_logs
        self.read_only_proc_sys = set(read_only_proc_sys)
        self.logs_dir = logs_base() / name
        self.record: LabRecord | None = None
        self.workdir: Path | None = None
        self.underlay: Underlay | None = None
        self.nodes: dict[int, NetnsNode | Container] = {}
        self.boot_seconds: dict[str, float] = {}
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Lab {self.name} kind={self.kind} nodes={list(self.nodes)}>"

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(raise_on_problems=exc_type is None, failed=exc_type is not None)

    def start(self) -> Lab:
        install_exit_handlers()
        if self.kind == "container":
            if self.rootfs is None:
                # Before claiming anything: a first build takes a minute or two.
                self.rootfs = ensure_rootfs()
            raise_inotify_limit()
        self.record = LabRecord.claim(self.name, self.kind)
        _live_labs.append(self)
        try:
            work_base().mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.name}-", dir=work_base()))
            self.record.add_dir(self.workdir)
            if self.share_dir is None:
                self.share_dir = self.workdir / "share"
                self.share_dir.mkdir()
            self.underlay = Underlay(self.record, self.name)
            self.underlay.create()
            for mesh_id in self.ids:
                self._create_node(mesh_id)
            self.underlay.wait_links_up()
            self._started = True
            if self.kind == "container" and self.boot_on_start:
                self.boot_all(self.boot_timeout)
        except BaseException:
            self.close(raise_on_problems=False, failed=True)
            raise
        return self

    def close(self, raise_on_problems: bool = True, failed: bool = False) -> None:
        if self._closed or self.record is None:
            return
        self._closed = True
        if self in _live_labs:
            _live_labs.remove(self)
        problems = destroy(self.record)
        if failed or problems or self.keep_logs:
            if self.logs_dir.is_dir():
                log(f"lab {self.name}: console logs kept in {self.logs_dir}")
        else:
            shutil.rmtree(self.logs_dir, ignore_errors=True)
        if problems:
            message = f"lab {self.name}: teardown incomplete ({self.record.path} kept for `down`): {problems}"
            log(message)
            if raise_on_problems:
                raise RuntimeError(message)

    # -- nodes ----------------------------------------------------------------

    def add_node(self, mesh_id: int, name: str | None = None) -> NetnsNode | Container:
        """One more node in a started lab (a container is left off: boot() it)."""
        if not self._started:
            raise RuntimeError("start the lab first (or list the id in ids=)")
        node = self._create_node(mesh_id, name)
        self.underlay.wait_links_up()
        return node

    def _create_node(self, mesh_id: int, name: str | None = None) -> NetnsNode | Container:
        if mesh_id in self.nodes:
            raise ValueError(f"lab {self.name} already has node {mesh_id}")
        node = KINDS[self.kind](self, name or f"node{mesh_id}", mesh_id)
        self.nodes[mesh_id] = node
        return node

    def node(self, mesh_id: int) -> NetnsNode | Container:
        return self.nodes[mesh_id]

    __getitem__ = node

    def impair(self, a: int, b: int, delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0,
               both_ways: bool = True) -> None:
        """netem between nodes a and b on the underlay: delay and jitter in ms
        one way, loss 0..1; both directions unless both_ways is False."""
        self.underlay.impair(self.workdir, a, b, delay, jitter, loss)
        if both_ways:
            self.underlay.impair(self.workdir, b, a, delay, jitter, loss)

    def by_name(self, name: str) -> NetnsNode | Container:
        for node in self.nodes.values():
            if node.name == name:
                return node
        raise KeyError(name)

    def boot_all(self, timeout: float = 180) -> dict[str, float]:
        """Boot every container that is off, in parallel; seconds to `running`."""
        if self.kind != "container":
            raise TypeError("only container labs boot")
        off = [node for node in self.nodes.values() if not node.is_up()]
        results = boot_in_parallel(off, timeout)
        self.boot_seconds.update(results)
        return results


def _close_live_labs() -> None:
    for lab in list(reversed(_live_labs)):
        try:
            lab.close(raise_on_problems=False)
        except Exception as error:  # noqa: BLE001 - atexit: report, keep going
            log(f"teardown of {lab.name} at exit failed: {error}")


def _raise_system_exit(signum, frame):
    # Unwinds through every `with Lab(...)` (and pytest's fixtures) like an
    # exception would, so teardown runs in the normal order.
    raise SystemExit(128 + signum)


def install_exit_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_live_labs)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        # Leave alone any handler someone else chose on purpose.
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _raise_system_exit)
    if signal.getsignal(signal.SIGINT) is signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.default_int_handler)
