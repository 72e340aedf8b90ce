"""The one seam between wgmesh and whatever runs its processes.

SystemdSupervisor starts and stops units (wgmesh-link@NAME and friends);
DirectSupervisor runs the same programs itself, for machines and tests
without systemd as PID 1. Everything else in wgmesh calls only this.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import bird, firewall, forwarding, linkfile, linkops, log, netlink, routing, servicemanager, vxlan
from .addressing import MeshPlan
from .config import NodeConfig
from .errors import WgmeshError
from .paths import Paths
from .process import read_pid, run, spawn_daemon, stop_daemon


def node_loopback_addresses(config: NodeConfig) -> list[str]:
    plan = MeshPlan.from_config(config)
    node_id = config.require_id()
    return [
        f"{plan.loopback4(node_id)}/30",
        f"{plan.loopback6(node_id)}/128",
        # OSPFv3 only runs on interfaces with a link-local address; lo has none.
        bird.LOOPBACK_LINK_LOCAL,
    ]


def ensure_loopback(paths: Paths, config: NodeConfig) -> str | None:
    """The node's own addresses, the rules that route by the mesh's table,
    the firewall that keeps the underlay out of the mesh, and forwarding
    unless it is a client (clients carry no transit traffic). The firewall
    comes before forwarding: never a moment of forwarding without it.
    A node that cannot forward (a read-only /proc/sys) still comes up, as a
    leaf: the problem is recorded for bird, the join API and status, logged
    as one warning, and returned."""
    netlink.ensure_addresses("lo", node_loopback_addresses(config))
    netlink.ensure_rules()
    firewall.apply(MeshPlan.from_config(config))
    problem = None if config.is_client else forwarding.enable()
    forwarding.record(paths, problem)
    if problem:
        log.warning(problem)
    return problem


def remove_loopback(config: NodeConfig) -> None:
    try:
        netlink.remove_addresses("lo", node_loopback_addresses(config))
    finally:
        try:
            netlink.remove_rules()
        finally:
            firewall.remove()


def _program(name: str) -> str:
    """A sibling wgmesh program: next to this interpreter's scripts first."""
    beside = Path(sys.argv[0]).resolve().parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise WgmeshError(f"{name} is not installed")
    return found


class DirectSupervisor:
    kind = "direct"

    def __init__(self, paths: Paths, config: NodeConfig):
        self.paths = paths
        self.config = config

    def start_link(self, name: str) -> None:
        linkops.bring_up(self.paths, self.config, name)

    def stop_link(self, name: str) -> None:
        linkops.take_down(self.paths, name)

    def reload_link(self, name: str) -> None:
        linkops.reload(self.paths, self.config, name)

    def links_changed(self) -> None:
        routing.apply(self.paths, self.config)

    def start_routing(self) -> None:
        routing.apply(self.paths, self.config)
        control = bird.BirdControl(self.paths.bird_socket)
        if control.alive():
            return
        pid_file = self.paths.pid_file("bird")
        spawn_daemon(
            ["bird", "-f", "-c", str(self.paths.bird_config), "-s", str(self.paths.bird_socket)],
            pid_file, self.paths.run_dir / "bird.log",
        )
        deadline = time.monotonic() + 10
        while not control.alive():
            if time.monotonic() > deadline or not read_pid(pid_file):
                raise WgmeshError(f"bird did not start; see {self.paths.run_dir / 'bird.log'}")
            time.sleep(0.05)

    def start_join_server(self) -> None:
        pid_file = self.paths.pid_file("join-server")
        if read_pid(pid_file):
            return
        spawn_daemon([_program("wgmesh-join-server")], pid_file, self.paths.run_dir / "join-server.log")

    def start_vxlan_sync(self) -> None:
        pid_file = self.paths.pid_file("vxlan-sync")
        if not read_pid(pid_file):
            spawn_daemon([_program("wgmesh-vxlan-sync")], pid_file, self.paths.run_dir / "vxlan-sync.log")

    def start_node(self) -> None:
        ensure_loopback(self.paths, self.config)
        links, _ = linkfile.load_all(self.paths)
        for link in links:
            try:
                self.start_link(link.name)
            except WgmeshError as error:
                log.error(f"link {link.name} did not come up: {error}", link=link.name)
        self.start_routing()
        self.start_join_server()
        self.start_vxlan_sync()

    def stop_node(self) -> None:
        stop_daemon(self.paths.pid_file("join-server"))
        stop_daemon(self.paths.pid_file("vxlan-sync"))
        vxlan.remove_devices()
        links, _ = linkfile.load_all(self.paths)
        for link in links:
            self.stop_link(link.name)
        stop_daemon(self.paths.pid_file("bird"))
        remove_loopback(self.config)


class SystemdSupervisor:
    kind = "systemd"

    def __init__(self, paths: Paths, config: NodeConfig):
        self.paths = paths
        self.config = config

    @staticmethod
    def _systemctl(*args: str) -> None:
        try:
            result = run(["systemctl", *args], capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise WgmeshError("systemctl is missing: set system.service_manager = \"direct\"") from None
        except subprocess.TimeoutExpired:
            raise WgmeshError(f"systemctl {' '.join(args)} did not finish within 120 s") from None
        if result.returncode != 0:
            raise WgmeshError(f"systemctl {' '.join(args)} failed: {result.stderr.strip() or result.returncode}")

    def start_link(self, name: str) -> None:
        # The generator only runs on daemon-reload; reloading keeps the
        # wants of wgmesh.target equal to the link files.
        self._systemctl("daemon-reload")
        self._systemctl("start", f"wgmesh-link@{name}.service")

    def stop_link(self, name: str) -> None:
        self._systemctl("stop", f"wgmesh-link@{name}.service")
        self._systemctl("daemon-reload")

    def reload_link(self, name: str) -> None:
        # ExecReload= (wgmesh-link reload), or a start if the unit is down.
        self._systemctl("reload-or-restart", f"wgmesh-link@{name}.service")

    def links_changed(self) -> None:
        self._systemctl("start", "--no-block", "wgmesh-cost-writer.service")

    def start_routing(self) -> None:
        self._systemctl("start", "wgmesh-bird.service")

    def start_join_server(self) -> None:
        self._systemctl("start", "wgmesh-join-server.socket")

    def start_node(self) -> None:
        self._systemctl("daemon-reload")
        self._systemctl("start", "wgmesh.target")

    def stop_node(self) -> None:
        self._systemctl("stop", "wgmesh.target")


def choose(paths: Paths, config: NodeConfig):
    manager = config.service_manager
    if manager == "auto":
        manager = "systemd" if servicemanager.booted() else "direct"
    return SystemdSupervisor(paths, config) if manager == "systemd" else DirectSupervisor(paths, config)
