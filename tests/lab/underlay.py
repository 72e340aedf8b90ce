"""The lab's routed "WAN": one namespace that forwards between a veth per node.

It is L3 on purpose: per-pair latency, jitter and loss are made by policy-
routing a pair's packets (`ip rule iif n<ID> to ...`) through a TUN owned by
a user-space delay process in this namespace (delay.py), which a bridge
would bypass.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .host import PREFIX, ip, log, run, sysctl
from .resources import LabRecord


@dataclass(frozen=True)
class UnderlayAddresses:
    mesh_id: int
    v4: str  # the node's own address
    v6: str
    gateway_v4: str  # the WAN side of the node's veth
    gateway_v6: str
    prefix_v4: int = 24
    prefix_v6: int = 64


def underlay_addresses(mesh_id: int) -> UnderlayAddresses:
    if not 0 <= mesh_id <= 255:
        raise ValueError(f"mesh id {mesh_id} does not fit the underlay plan 198.18.<id>.0/24")
    # The id is written in decimal inside the hex group: a label, so that
    # node 12 reads 2001:db8:12::2 next to 198.18.12.2.
    return UnderlayAddresses(
        mesh_id=mesh_id,
        v4=f"198.18.{mesh_id}.2",
        v6=f"2001:db8:{mesh_id}::2",
        gateway_v4=f"198.18.{mesh_id}.1",
        gateway_v6=f"2001:db8:{mesh_id}::1",
    )


def wan_interface(mesh_id: int) -> str:
    """The node's veth end inside the WAN namespace (for `ip rule iif ...`)."""
    return f"n{mesh_id}"


NODE_INTERFACE = "eth0"


def _operstate(netns: str, interface: str) -> str:
    result = ip(netns, "-json", "link", "show", "dev", interface, check=False)
    if result.returncode != 0:
        return "MISSING"
    return json.loads(result.stdout)[0].get("operstate", "UNKNOWN")

# DAD would keep fresh IPv6 addresses "tentative" for a second or more;
# nodad on the addresses does not cover the link-local one.
_NO_DAD = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}


class Underlay:
    DELAY_TUN = "wgmdelay"
    DELAY_TABLE = "100"

    def __init__(self, record: LabRecord, lab_name: str):
        self.record = record
        self.netns = f"{PREFIX}{lab_name}-wan"
        self.attached: dict[int, str] = {}
        self.impairments: dict[str, dict] = {}
        self._delay_control: Path | None = None
        self._impaired_pairs: set[tuple[int, int]] = set()
        self.seed: int | None = None

    def create(self) -> None:
        self.record.add_netns(self.netns)
        run(["ip", "netns", "add", self.netns])
        ip(self.netns, "link", "set", "lo", "up")
        sysctl(
            self.netns,
            {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1", **_NO_DAD},
        )

    def attach(self, node_netns: str, mesh_id: int) -> UnderlayAddresses:
        """Wire `node_netns` (already created, recorded by its owner) as node `mesh_id`."""
        if mesh_id in self.attached:
            raise ValueError(f"mesh id {mesh_id} is already attached ({self.attached[mesh_id]})")
        addresses = underlay_addresses(mesh_id)
        wan_side = wan_interface(mesh_id)
        ip(node_netns, "link", "set", "lo", "up")
        sysctl(node_netns, _NO_DAD)
        # Created inside the WAN netns with the peer sent straight into the
        # node: never a moment in the host namespace, where eth0 may exist.
        ip(self.netns, "link", "add", wan_side, "type", "veth", "peer", "name", NODE_INTERFACE, "netns", node_netns)
        run(["ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", f"net.ipv6.conf.{wan_side}.accept_dad=0"])
        run(["ip", "netns", "exec", node_netns, "sysctl", "-q", "-w", f"net.ipv6.conf.{NODE_INTERFACE}.accept_dad=0"])
        ip(self.netns, "address", "add", f"{addresses.gateway_v4}/{addresses.prefix_v4}", "dev", wan_side)
        ip(self.netns, "address", "add", f"{addresses.gateway_v6}/{addresses.prefix_v6}", "dev", wan_side, "nodad")
        ip(node_netns, "address", "add", f"{addresses.v4}/{addresses.prefix_v4}", "dev", NODE_INTERFACE)
        ip(node_netns, "address", "add", f"{addresses.v6}/{addresses.prefix_v6}", "dev", NODE_INTERFACE, "nodad")
        ip(self.netns, "link", "set", wan_side, "up")
        ip(node_netns, "link", "set", NODE_INTERFACE, "up")
        ip(node_netns, "route", "add", "default", "via", addresses.gateway_v4)
        ip(node_netns, "-6", "route", "add", "default", "via", addresses.gateway_v6)
        self.attached[mesh_id] = node_netns
        return addresses

    def wait_links_up(self, timeout: float = 10) -> None:
        """Carrier on a fresh veth shows after the kernel's link-watch delay
        (up to a second); tests that read operstate must not see NO-CARRIER."""
        deadline = time.monotonic() + timeout
        pending = dict(self.attached)
        while pending:
            for mesh_id, node_netns in list(pending.items()):
                if _operstate(self.netns, wan_interface(mesh_id)) == "UP" and _operstate(node_netns, NODE_INTERFACE) == "UP":
                    del pending[mesh_id]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"underlay links still down after {timeout} s: {sorted(pending)}")
            if pending:
                time.sleep(0.05)

    def wan_interface(self, mesh_id: int) -> str:
        return wan_interface(mesh_id)

    def impair(self, workdir: Path, source: int, destination: int, delay: float = 0.0, jitter: float = 0.0,
               loss: float = 0.0) -> None:
        """Packets from node source to node destination (underlay, both
        families) get delay and jitter (ms, one way) and loss (0..1) from now
        on; all zero makes the pair clean again."""
        if self._delay_control is None:
            self._start_delay(workdir)
        if (source, destination) not in self._impaired_pairs:
            to = underlay_addresses(destination)
            ip(self.netns, "rule", "add", "iif", wan_interface(source), "to", f"{to.v4}/24", "lookup", self.DELAY_TABLE)
            ip(self.netns, "-6", "rule", "add", "iif", wan_interface(source), "to", f"{to.v6}/64",
               "lookup", self.DELAY_TABLE)
            self._impaired_pairs.add((source, destination))
        self.impairments[f"{source}>{destination}"] = {"delay": delay, "jitter": jitter, "loss": loss}
        temporary = self._delay_control.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.impairments))
        temporary.replace(self._delay_control)
        time.sleep(0.2)  # the delay process reads the file every 0.1 s

    def _start_delay(self, workdir: Path) -> None:
        control, ready = workdir / "impairments.json", workdir / "delay.ready"
        # Seeded and printed: a run that failed on an unlucky draw can be
        # repeated with WGMESH_LAB_SEED.
        seed = int(os.environ.get("WGMESH_LAB_SEED") or random.randrange(1 << 32))
        log(f"underlay impairments: random seed {seed} (repeat with WGMESH_LAB_SEED={seed})")
        self.seed = seed
        control.write_text("{}")
        project = Path(__file__).parents[2]
        log_file = open(workdir / "delay.log", "ab")  # noqa: SIM115 - the delay process's, for its life
        # A process inside the WAN namespace: the lab's teardown ends it with the namespace.
        subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-m", "tests.lab.delay",
                          "--tun", self.DELAY_TUN, "--control", str(control), "--ready", str(ready),
                          "--seed", str(seed)],
                         cwd=project, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                         start_new_session=True, env={**os.environ, "PYTHONPATH": str(project)})
        log_file.close()
        deadline = time.monotonic() + 10
        while not ready.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the delay process did not start: {(workdir / 'delay.log').read_text()[-500:]}")
            time.sleep(0.05)
        ip(self.netns, "link", "set", self.DELAY_TUN, "up")
        ip(self.netns, "route", "add", "default", "dev", self.DELAY_TUN, "table", self.DELAY_TABLE)
        ip(self.netns, "-6", "route", "add", "default", "dev", self.DELAY_TUN, "table", self.DELAY_TABLE)
        self._delay_control = control

    def run(self, argv: list[str], check: bool = True, timeout: float = 60):
        """A command inside the WAN namespace (tcpdump, ip rule, the delay process)."""
        return run(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=timeout)
