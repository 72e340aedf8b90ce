"""The link-maker's core: realise a link file as a WireGuard interface, or
remove it. Idempotent both ways, so a retry finishes a half-done job."""

import ipaddress
import os
import signal
import time
from pathlib import Path

from . import linkfile, log, netlink
from .addressing import link_local6
from .config import NodeConfig
from .errors import WgmeshError
from .linkfile import Link
from .paths import Paths
from .process import read_pid
from .tomlio import write_atomic
from .wireguard import DeviceSettings, UserspaceBackend, choose_backend


def interface_addresses(link: Link) -> list[str]:
    """Every address the link's interface carries, as CIDRs."""
    return [
        f"{link.local4}/31",
        f"{link.local6}/127",
        f"{link_local6(ipaddress.IPv4Address(link.local4))}/64",
    ]


def device_settings(link: Link, private_key: str, psk: str) -> DeviceSettings:
    return DeviceSettings(
        private_key=private_key,
        listen_port=link.listen_port,
        peer_public_key=link.peer_public_key,
        preshared_key=psk,
        # Only the connecting side knows where the other is; the serving side
        # learns the endpoint from the first handshake, so NAT works.
        endpoint=link.endpoint if link.role == "client" else None,
        # Keepalives from the client keep NAT mappings open.
        keepalive=link.keepalive if link.role == "client" else 0,
    )


def bring_up(paths: Paths, config: NodeConfig, name: str, supervised: bool = False):
    """Create and configure the link's interface.

    supervised=False (no service manager): wireguard-go is left running in its
    own session with a pid file. supervised=True (under wgmesh-link@.service):
    the wireguard-go process is returned so the caller can hand it to systemd.
    """
    link = linkfile.load(paths, name)
    private_key = linkfile.read_secret(paths.link_key(name))
    psk = linkfile.read_secret(paths.link_psk(name))
    backend = choose_backend(config.backend)
    process = None
    paths.pid_dir.mkdir(parents=True, exist_ok=True)
    pid_file = paths.pid_file(f"wg-{name}")
    if isinstance(backend, UserspaceBackend):
        running = read_pid(pid_file) if not supervised else None
        if not (running and netlink.interface_exists(name)):
            if netlink.interface_exists(name):
                netlink.delete_interface(name)
            log_path = paths.run_dir / f"wg-{name}.log" if not supervised else None
            process = backend.start(name, log_path=log_path, detach=not supervised)
            if not supervised:
                write_atomic(pid_file, f"{process.pid}\n".encode())
    else:
        backend.start(name)
    try:
        backend.configure(name, device_settings(link, private_key, psk))
        netlink.configure_interface(name, link.mtu, interface_addresses(link))
    except BaseException:
        take_down(paths, name)
        raise
    log.event("link-up", f"link {name} to node {link.peer_id} is up", link=name, peer=link.peer_id)
    return process


def take_down(paths: Paths, name: str) -> bool:
    """Remove the interface and stop its wireguard-go, if any."""
    existed = netlink.delete_interface(name)
    pid_file = paths.pid_file(f"wg-{name}")
    pid = read_pid(pid_file)
    if pid:
        # Deleting the TUN device makes wireguard-go exit on its own; this
        # covers the case where it is stuck or the device was already gone.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and read_pid(pid_file):
            time.sleep(0.05)
        if read_pid(pid_file):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    pid_file.unlink(missing_ok=True)
    (paths.run_dir / f"wg-{name}.log").unlink(missing_ok=True)
    if existed:
        log.event("link-down", f"link {name} is down", link=name)
    return existed


def link_is_up(name: str) -> bool:
    return netlink.interface_is_up(name)


def device_status(config: NodeConfig, name: str):
    try:
        return choose_backend(config.backend).status(name)
    except (WgmeshError, OSError):
        return None
