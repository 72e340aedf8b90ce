"""The one seam between wgmesh and whatever runs its processes (Supervisor).

SystemdSupervisor starts and stops units (wgmesh-link@NAME and friends);
DirectSupervisor runs the same programs itself, for machines and tests
without systemd as PID 1. Both offer exactly the Supervisor operations;
everything else in wgmesh calls only those, never asks which one it has.

Side of the join split: privileged only. The join helper
(wgmesh-join-helper, root), the `wgmesh` commands, wgmesh-vxlan-sync and a
mesh pass use a supervisor; the unprivileged front end (wgmesh-join-server)
never does: it asks the helper, which starts, stops and reloads links.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

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
    _announce_loopback(paths, config)
    return problem


def remove_loopback(paths: Paths, config: NodeConfig) -> None:
    try:
        netlink.remove_addresses("lo", node_loopback_addresses(config))
        _announce_loopback(paths, config)
    finally:
        try:
            netlink.remove_rules()
        finally:
            firewall.remove()


def _announce_loopback(paths: Paths, config: NodeConfig) -> None:
    """bird announces the IPv4 loopback only while lo holds it (see
    bird.render): a running bird learns of the change now. The addresses
    matter more than the announcement, so a failure here is a warning."""
    try:
        routing.apply(paths, config)
    except Exception as error:  # noqa: BLE001 - see the docstring
        log.warning(f"could not bring bird's announcement of the loopback up to date: {error}")


def _program(name: str) -> str:
    """A sibling wgmesh program: next to this interpreter's scripts first."""
    beside = Path(sys.argv[0]).resolve().parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise WgmeshError(f"{name} is not installed")
    return found


@runtime_checkable
class Supervisor(Protocol):
    """What wgmesh asks of whatever runs its processes."""

    def start_link(self, name: str) -> None:
        """Bring link NAME's interface up from its file (written before)."""

    def stop_link(self, name: str) -> None:
        """Take link NAME's interface down (its file may stay or go)."""

    def reload_link(self, name: str) -> None:
        """Apply link NAME's file to its running interface without a
        restart (a rekey, a new endpoint), or start it if it is down."""

    def links_changed(self) -> None:
        """The set of link files changed: bring bird in line, in this
        process (routing.apply: the published costs, no Python start-up)."""

    def start_mesh_pass(self) -> bool:
        """Start a mesh pass in the background (`wgmesh mesh`); False when
        one is running already (its view of the routes may predate what the
        caller saw, so the caller asks again once it has finished)."""

    def mesh_pass_succeeded(self) -> bool | None:
        """Whether the last mesh pass linked every node it should have;
        None while one is queued or running."""

    def start_node(self) -> None:
        """Bring the whole node up: addresses, links, bird, join API, overlay."""

    def stop_node(self) -> None:
        """Take the whole node down (link files stay)."""


class DirectSupervisor:

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

    def start_mesh_pass(self) -> bool:
        # Without systemd there is no wgmesh-mesh.timer either: mesh passes
        # are the operator's (`wgmesh mesh`, by hand or from their own
        # scheduler), and the tests that run nodes this way rely on no link
        # being made behind their back. Nothing to start.
        return True

    def mesh_pass_succeeded(self) -> bool | None:
        return True  # none was started

    def _start_routing(self) -> None:
        routing.apply(self.paths, self.config)
        control = bird.BirdControl(self.paths.bird_socket)
        if control.alive():
            return
        pid_file = self.paths.pid_file("bird")
        spawn_daemon(
            ["bird", "-f", "-c", str(self.paths.bird_config), "-s", str(self.paths.bird_socket)],
            pid_file, self.paths.daemon_log("bird"),
        )
        deadline = time.monotonic() + 10
        while not control.alive():
            if time.monotonic() > deadline or not read_pid(pid_file):
                raise WgmeshError(f"bird did not start; see {self.paths.daemon_log('bird')}")
            time.sleep(0.05)

    def _start_join_server(self) -> None:
        pid_file = self.paths.pid_file("join-server")
        if read_pid(pid_file):
            return
        spawn_daemon([_program("wgmesh-join-server")], pid_file, self.paths.daemon_log("join-server"))

    def _start_vxlan_sync(self) -> None:
        pid_file = self.paths.pid_file("vxlan-sync")
        if not read_pid(pid_file):
            spawn_daemon([_program("wgmesh-vxlan-sync")], pid_file, self.paths.daemon_log("vxlan-sync"))

    def start_node(self) -> None:
        ensure_loopback(self.paths, self.config)
        links, _ = linkfile.load_all(self.paths)
        for link in links:
            try:
                self.start_link(link.name)
            except WgmeshError as error:
                log.error(f"link {link.name} did not come up: {error}", link=link.name)
        self._start_routing()
        self._start_join_server()
        self._start_vxlan_sync()

    def stop_node(self) -> None:
        stop_daemon(self.paths.pid_file("join-server"))
        stop_daemon(self.paths.pid_file("vxlan-sync"))
        vxlan.remove_devices()
        links, _ = linkfile.load_all(self.paths)
        for link in links:
            self.stop_link(link.name)
        stop_daemon(self.paths.pid_file("bird"))
        remove_loopback(self.paths, self.config)


class SystemdSupervisor:

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

    # No daemon-reload per link: a started template instance runs without
    # the generator's wants, and the generator runs again at every boot
    # (and at start_node), so a link made or removed now is wanted, or not,
    # from the next boot on. Between the two, a want left behind by a
    # removed link is harmless: its unit's ConditionPathExists= on the link
    # file skips it. A daemon-reload costs every unit file parsed again and
    # the generator run, seconds for a node joining a mesh of many links.
    def start_link(self, name: str) -> None:
        self._systemctl("start", f"wgmesh-link@{name}.service")

    def stop_link(self, name: str) -> None:
        self._systemctl("stop", f"wgmesh-link@{name}.service")

    def reload_link(self, name: str) -> None:
        # ExecReload= (wgmesh-link reload), or a start if the unit is down.
        self._systemctl("reload-or-restart", f"wgmesh-link@{name}.service")

    def links_changed(self) -> None:
        # In this process, as the direct supervisor does: starting
        # wgmesh-cost-writer.service for it cost a Python start-up per link
        # (and the path unit watching /etc/wgmesh/links ran it again). The
        # costs are the published ones; the next probe round re-costs.
        routing.apply(self.paths, self.config)

    def start_mesh_pass(self) -> bool:
        state = self._unit_state("wgmesh-mesh.service")
        if state.get("LoadState") == "masked":
            return True  # the operator turned mesh passes off
        if state.get("ActiveState") == "activating":
            return False
        self._systemctl("start", "--no-block", "wgmesh-mesh.service")
        return True

    def mesh_pass_succeeded(self) -> bool | None:
        state = self._unit_state("wgmesh-mesh.service")
        if state.get("Job") or state.get("ActiveState") in ("activating", "deactivating"):
            return None
        return state.get("Result") == "success"

    @staticmethod
    def _unit_state(unit: str) -> dict[str, str]:
        try:
            result = run(["systemctl", "show", "--property=LoadState,ActiveState,Result,Job", unit],
                         capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise WgmeshError(f"systemctl show {unit} failed: {error}") from None
        return dict(line.partition("=")[::2] for line in result.stdout.splitlines())

    def start_node(self) -> None:
        self._systemctl("daemon-reload")
        self._systemctl("start", "wgmesh.target")

    def stop_node(self) -> None:
        self._systemctl("stop", "wgmesh.target")


def choose(paths: Paths, config: NodeConfig) -> Supervisor:
    manager = config.service_manager
    if manager == "auto":
        manager = "systemd" if servicemanager.booted() else "direct"
    return SystemdSupervisor(paths, config) if manager == "systemd" else DirectSupervisor(paths, config)
