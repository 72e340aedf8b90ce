"""The link-maker's core: realise a link file as a WireGuard interface, or
remove it. Idempotent both ways, so a retry finishes a half-done job."""

import ipaddress
import os
import time

from . import linkfile, log, netlink
from .addressing import LINK_PREFIX4, LINK_PREFIX6, link_local6
from .config import NodeConfig
from .errors import WgmeshError
from .linkfile import Link
from .paths import Paths
from .process import stop_daemon
from .tomlio import write_atomic
from .wireguard import Backend, DeviceSettings, choose_backend


def interface_addresses(link: Link) -> list[str]:
    """Every address the link's interface carries, as CIDRs."""
    return [
        f"{link.local4}/{LINK_PREFIX4}",
        f"{link.local6}/{LINK_PREFIX6}",
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
        endpoint=link.endpoint if link.role == linkfile.DIALER else None,
        # Keepalives from the dialer keep NAT mappings open.
        keepalive=link.keepalive if link.role == linkfile.DIALER else 0,
    )


def _load(paths: Paths, name: str) -> tuple[Link, str, str]:
    return (linkfile.load(paths, name), linkfile.read_secret(paths.link_key(name)),
            linkfile.read_secret(paths.link_psk(name)))


def _configure(paths: Paths, backend, link: Link, private_key: str, psk: str) -> None:
    try:
        backend.configure(link.name, device_settings(link, private_key, psk))
        netlink.configure_interface(link.name, link.mtu, interface_addresses(link))
    except BaseException:
        take_down(paths, link.name)
        raise
    _mark_up(paths, link.name)
    log.event("link-up", f"link {link.name} to node {link.peer_id} is up", link=link.name, peer=link.peer_id)


def backend_of(paths: Paths, config: NodeConfig) -> Backend:
    return choose_backend(config.backend, paths.wireguard_socket_dir)


def bring_up(paths: Paths, config: NodeConfig, name: str) -> None:
    """Create and configure the link's interface, without a service manager:
    wireguard-go (if used) is left running in its own session, with a pid file."""
    link, private_key, psk = _load(paths, name)
    backend = backend_of(paths, config)
    backend.create(name, paths.pid_file(f"wg-{name}"), paths.daemon_log(f"wg-{name}"))
    _configure(paths, backend, link, private_key, psk)


def bring_up_supervised(paths: Paths, config: NodeConfig, name: str, notify) -> None:
    """Bring the link up as the main process of wgmesh-link@NAME.service
    (the backend decides whether that process stays, see Backend)."""
    link, private_key, psk = _load(paths, name)

    def configure() -> None:
        try:
            _configure(paths, backend, link, private_key, psk)
        except BaseException as error:
            log.error(f"link {name} could not be configured: {error}", link=name)
            raise

    backend = backend_of(paths, config)
    backend.run_supervised(name, configure, notify)


def reload(paths: Paths, config: NodeConfig, name: str) -> None:
    """Make the running interface what its link file says now (a new key
    of either side, a new endpoint, MTU or keepalive), without restarting
    it or any other link."""
    if not netlink.interface_exists(name):
        raise WgmeshError(f"link {name} is not up, so there is nothing to reload (start it: wgmesh up)")
    link, private_key, psk = _load(paths, name)
    backend = backend_of(paths, config)
    backend.update(name, device_settings(link, private_key, psk))
    _end_fresh(paths, name)
    netlink.configure_interface(name, link.mtu, interface_addresses(link))
    log.event("link-reloaded", f"link {name} to node {link.peer_id} reloaded from its file",
              link=name, peer=link.peer_id)


def take_down(paths: Paths, name: str) -> bool:
    """Remove the interface and stop its wireguard-go, if any."""
    existed = netlink.delete_interface(name)
    # Deleting the TUN device already makes wireguard-go exit; this covers a
    # daemon that is stuck or whose device was already gone.
    stop_daemon(paths.pid_file(f"wg-{name}"), timeout=3)
    (paths.daemon_log(f"wg-{name}")).unlink(missing_ok=True)
    if existed:
        log.event("link-down", f"link {name} is down", link=name)
    return existed


# A link file written at most this long before its device first comes up
# is a new link being made (a join writes it and starts it at once; the
# unit may take up to its start timeout), not an old one booting.
NEW_LINK_WINDOW = 60.0
FRESH = b"fresh\n"


def _up_marker(paths: Paths, name: str):
    return paths.link_up_dir / name


def _mark_up(paths: Paths, name: str) -> None:
    """Note when the device came up (the marker's mtime; /run is emptied at
    boot, so it is always this boot's) and whether it has run without a
    break since the link was made (see is_fresh): so on its first start
    this boot, for a file written just before."""
    marker = _up_marker(paths, name)
    try:
        new = not marker.exists() and time.time() - paths.link_file(name).stat().st_mtime <= NEW_LINK_WINDOW
    except OSError:
        new = False
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, FRESH if new else b"", 0o644)


def _end_fresh(paths: Paths, name: str) -> None:
    """The device was reconfigured in place (a new key of either side): its
    handshake state no longer covers the link's whole life. Its start time
    stays."""
    marker = _up_marker(paths, name)
    try:
        started = marker.stat().st_mtime
    except OSError:
        return
    write_atomic(marker, b"", 0o644)
    os.utime(marker, (started, started))


def up_since(paths: Paths, name: str) -> float | None:
    """When the link's device last came up (Unix time); None if not noted
    (never up this boot, or brought up by a version that did not note it)."""
    try:
        return _up_marker(paths, name).stat().st_mtime
    except OSError:
        return None


def is_fresh(paths: Paths, name: str) -> bool:
    """Whether the link's device has run without a break or a reload since
    the link was made: then a device that has had no handshake shows the
    link never had one, on either side."""
    try:
        return _up_marker(paths, name).read_bytes() == FRESH
    except OSError:
        return False


def forget(paths: Paths, name: str) -> None:
    """The link is removed: a new link of the same name starts fresh."""
    _up_marker(paths, name).unlink(missing_ok=True)


def device_status(paths: Paths, config: NodeConfig, name: str, backend: Backend | None = None):
    """The device's status, None if it cannot be read. backend: the one a
    caller asking for many links chose once (choosing asks the kernel)."""
    try:
        return (backend or backend_of(paths, config)).status(name)
    except (WgmeshError, OSError):
        return None
