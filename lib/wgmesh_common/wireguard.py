"""WireGuard devices behind one interface (Backend), with two implementations.

KernelBackend talks generic netlink through pyroute2; UserspaceBackend runs
wireguard-go in the foreground and configures it over its UAPI socket (the
protocol `wg` itself speaks). Both take the same DeviceSettings and offer
exactly the Backend operations, so the link-maker never asks which one it
has; a third (AmneziaWG) is one more class with the same operations.
pyroute2 is imported where the kernel backend uses it (see netlink's
docstring: the slowest import).

Side of the join split: privileged only. A backend is used by wgmesh-link
(wgmesh-link@NAME.service, or the direct supervisor) to make and reload
interfaces, and read (status) by the cost-writer and `wgmesh status`; the
unprivileged join front end (wgmesh-join-server) never touches one: a
reload it asks for goes through the helper (wgmesh-join-helper) and the
supervisor.
"""

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from . import log, netlink
from .errors import WgmeshError
from .keys import from_hex, public_key, to_hex
from .linkfile import format_endpoint, parse_endpoint
from .process import read_pid, run
from .tomlio import write_atomic


@dataclass(frozen=True)
class DeviceSettings:
    private_key: str
    listen_port: int
    peer_public_key: str
    preshared_key: str
    endpoint: str | None = None  # "1.2.3.4:51820" or "[2001:db8::1]:51820"
    keepalive: int = 0
    allowed_ips: tuple[str, ...] = ("0.0.0.0/0", "::/0")


@dataclass
class PeerStatus:
    public_key: str
    endpoint: str | None = None
    last_handshake: float = 0.0  # epoch seconds; 0: never
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass
class DeviceStatus:
    listen_port: int = 0
    public_key: str | None = None
    peers: list[PeerStatus] = field(default_factory=list)


# ---------------------------------------------------------------- user space

def uapi_set_request(settings: DeviceSettings) -> str:
    """The UAPI 'set' message that makes a device exactly settings."""
    lines = [
        "set=1",
        f"private_key={to_hex(settings.private_key)}",
        f"listen_port={settings.listen_port}",
        "replace_peers=true",
    ]
    return "\n".join(lines + _uapi_peer_lines(settings)) + "\n\n"


def uapi_update_request(settings: DeviceSettings, current_peers: list[str]) -> str:
    """The UAPI 'set' message that moves a running device to settings
    without replace_peers: a peer that stays keeps its session, so a new
    MTU, keepalive or endpoint does not cost a handshake."""
    lines = [
        "set=1",
        f"private_key={to_hex(settings.private_key)}",
        f"listen_port={settings.listen_port}",
    ]
    for key in current_peers:
        if key != settings.peer_public_key:
            lines += [f"public_key={to_hex(key)}", "remove=true"]
    return "\n".join(lines + _uapi_peer_lines(settings)) + "\n\n"


def _uapi_peer_lines(settings: DeviceSettings) -> list[str]:
    lines = [
        f"public_key={to_hex(settings.peer_public_key)}",
        f"preshared_key={to_hex(settings.preshared_key)}",
    ]
    if settings.endpoint:
        lines.append(f"endpoint={settings.endpoint}")
    lines.append(f"persistent_keepalive_interval={settings.keepalive}")
    lines.append("replace_allowed_ips=true")
    lines += [f"allowed_ip={ip}" for ip in settings.allowed_ips]
    return lines


def parse_uapi_get(text: str) -> DeviceStatus:  # noqa: C901 - a branch per UAPI key, flat on purpose
    status = DeviceStatus()
    peer: PeerStatus | None = None
    handshake_sec = 0
    for line in text.splitlines():
        if not line or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "errno" and value != "0":
            raise WgmeshError(f"wireguard-go refused the request (errno {value})")
        if key == "listen_port":
            status.listen_port = int(value)
        elif key == "private_key":
            # Only the public half ever leaves this function.
            status.public_key = public_key(from_hex(value))
        elif key == "public_key":
            peer = PeerStatus(from_hex(value))
            status.peers.append(peer)
        elif peer is not None:
            if key == "endpoint":
                peer.endpoint = value
            elif key == "last_handshake_time_sec":
                handshake_sec = int(value)
            elif key == "last_handshake_time_nsec":
                peer.last_handshake = handshake_sec + int(value) / 1e9
            elif key == "rx_bytes":
                peer.rx_bytes = int(value)
            elif key == "tx_bytes":
                peer.tx_bytes = int(value)
    return status


def uapi_exchange(ifname: str, request: str, directory: Path, timeout: float = 5.0) -> str:
    path = directory / f"{ifname}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise WgmeshError(f"{ifname}: no wireguard-go is listening on {path}") from None
        sock.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    text = reply.decode()
    for line in text.splitlines():
        if line.startswith("errno=") and line != "errno=0":
            raise WgmeshError(f"{ifname}: wireguard-go refused the configuration ({line})")
    return text


@runtime_checkable
class Backend(Protocol):
    """What wgmesh asks of a WireGuard implementation, and nothing more."""

    name: str

    def create(self, ifname: str, pid_file: Path, log_path: Path) -> None:
        """Make the device without a service manager (the direct supervisor):
        a daemon it needs runs in its own session, its PID in pid_file and
        its output in log_path. A device already there with its daemon
        alive is kept, so a retry finishes a half-done start."""

    def run_supervised(self, ifname: str, configure: Callable[[], None], notify: Callable[[str], None]) -> None:
        """Make the device as the main process of wgmesh-link@NAME.service:
        configure() it, then notify("READY=1"). May never return (a daemon
        that takes over this process)."""

    def configure(self, ifname: str, settings: DeviceSettings) -> None:
        """Make the device exactly settings (any other peer goes)."""

    def update(self, ifname: str, settings: DeviceSettings) -> None:
        """Move a running device to settings; a peer that stays keeps its
        session (the reload path: a new key, endpoint or keepalive)."""

    def status(self, ifname: str) -> DeviceStatus:
        """The device's port, public key and peers (handshakes, counters)."""


class UserspaceBackend:
    name = "userspace"

    def __init__(self, socket_dir: Path, binary: str = "wireguard-go"):
        # wireguard-go puts its sockets in /var/run/wireguard (the same
        # directory as /run/wireguard); Paths.wireguard_socket_dir names it.
        self.socket_dir = socket_dir
        self.binary = binary

    def create(self, ifname: str, pid_file: Path, log_path: Path) -> None:
        if read_pid(pid_file) and netlink.interface_exists(ifname):
            return
        if netlink.interface_exists(ifname):
            netlink.delete_interface(ifname)
        for directory in {pid_file.parent, log_path.parent}:
            directory.mkdir(parents=True, exist_ok=True)
        process = self._start(ifname, log_path)
        write_atomic(pid_file, f"{process.pid}\n".encode())

    def _start(self, ifname: str, log_path: Path) -> subprocess.Popen:
        """Run wireguard-go for ifname in its own session; return once its
        UAPI socket answers."""
        env = self._environment()
        log.debug(f"starting {self.binary} -f {ifname}")
        with open(log_path, "ab") as out:
            try:
                process = subprocess.Popen(
                    [self.binary, "-f", ifname],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True, close_fds=True,
                )
            except FileNotFoundError:
                raise WgmeshError(f"{self.binary} is not installed (needed without the WireGuard kernel module)") from None
        try:
            self._wait_ready(ifname, process)
        except WgmeshError:
            process.kill()
            process.wait()
            raise
        return process

    def run_supervised(self, ifname: str, configure: Callable[[], None], notify: Callable[[str], None]) -> None:
        """This process becomes wireguard-go (exec, same PID, so the daemon
        is systemd's own child and main process), while a detached helper
        waits for its control socket, configures it and reports READY; if
        that fails the helper stops the daemon and the start fails."""
        if netlink.interface_exists(ifname):
            netlink.delete_interface(ifname)
        main_pid = os.getpid()
        helper = os.fork()
        if helper == 0:
            # Fork again so the configuring process is not wireguard-go's
            # child (it would never be reaped); the service manager adopts it.
            if os.fork() != 0:
                os._exit(0)
            try:
                self._wait_ready(ifname)
                configure()
                notify("READY=1")
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - report, stop the daemon, fail the start
                notify(f"STATUS=configuring {ifname} failed: {error}")
                try:
                    os.kill(main_pid, signal.SIGTERM)
                finally:
                    os._exit(1)
        os.waitpid(helper, 0)
        env = self._environment()
        log.debug(f"becoming {self.binary} -f {ifname}")
        try:
            os.execvpe(self.binary, [self.binary, "-f", ifname], env)
        except FileNotFoundError:
            raise WgmeshError(f"{self.binary} is not installed (needed without the WireGuard kernel module)") from None

    def _wait_ready(self, ifname: str, process: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
        """Until wireguard-go answers on its socket."""
        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise WgmeshError(f"{ifname}: wireguard-go exited at start (status {process.returncode})")
            try:
                uapi_exchange(ifname, "get=1\n\n", self.socket_dir, timeout=1)
                return
            except WgmeshError:
                if time.monotonic() > deadline:
                    raise WgmeshError(f"{ifname}: wireguard-go did not open its control socket within {timeout:.0f} s")
                time.sleep(0.02)

    @staticmethod
    def _environment() -> dict:
        env = dict(os.environ)
        # Anything but "1" here makes wireguard-go re-exec itself forever.
        env.pop("WG_PROCESS_FOREGROUND", None)
        env["LOG_LEVEL"] = env.get("WGMESH_WG_LOG_LEVEL", "error")
        return env

    def configure(self, ifname: str, settings: DeviceSettings) -> None:
        uapi_exchange(ifname, uapi_set_request(settings), self.socket_dir)

    def update(self, ifname: str, settings: DeviceSettings) -> None:
        current = [peer.public_key for peer in self.status(ifname).peers]
        uapi_exchange(ifname, uapi_update_request(settings, current), self.socket_dir)

    def status(self, ifname: str) -> DeviceStatus:
        return parse_uapi_get(uapi_exchange(ifname, "get=1\n\n", self.socket_dir))


# ------------------------------------------------------------------- kernel

def kernel_set_arguments(ifname: str, settings: DeviceSettings) -> dict:
    """Arguments for pyroute2's WireGuard.set() that realise settings."""
    peer = {
        "public_key": settings.peer_public_key,
        "preshared_key": settings.preshared_key,
        "persistent_keepalive": settings.keepalive,
        "allowed_ips": list(settings.allowed_ips),
    }
    if settings.endpoint:
        host, port = parse_endpoint(settings.endpoint)
        peer["endpoint_addr"] = host
        peer["endpoint_port"] = port
    return {
        "interface": ifname,
        "private_key": settings.private_key,
        "listen_port": settings.listen_port,
        "peer": peer,
    }


class KernelBackend:
    name = "kernel"

    def create(self, ifname: str, pid_file: Path, log_path: Path) -> None:
        # The kernel is the daemon: no process, no pid file, no log.
        self._add(ifname)

    def run_supervised(self, ifname: str, configure: Callable[[], None], notify: Callable[[str], None]) -> None:
        # Nothing to supervise: configure, report READY and return (the
        # unit remains active through RemainAfterExit).
        self._add(ifname)
        configure()
        notify("READY=1")

    @staticmethod
    def _add(ifname: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        with netlink.handle() as ipr:
            try:
                ipr.link("add", ifname=ifname, kind="wireguard")
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise WgmeshError(f"{ifname}: cannot create a WireGuard interface: {error}") from None

    def configure(self, ifname: str, settings: DeviceSettings) -> None:
        from pyroute2 import WireGuard

        with WireGuard() as wg:
            # pyroute2 0.7 adds peers one by one and never replaces the set:
            # drop any peer that is not ours first, so the device ends exact.
            current = self.status(ifname, wg)
            for peer in current.peers:
                if peer.public_key != settings.peer_public_key:
                    wg.set(ifname, peer={"public_key": peer.public_key, "remove": True})
            wg.set(**kernel_set_arguments(ifname, settings))

    # Setting a peer that exists changes it in place: its session stays.
    update = configure

    def status(self, ifname: str, wg=None) -> DeviceStatus:
        from pyroute2 import WireGuard

        own = wg is None
        wg = wg or WireGuard()
        try:
            messages = wg.info(ifname)
        finally:
            if own:
                wg.close()
        return parse_kernel_info(messages)


def _key_text(value) -> str:
    """A key attribute as base64 text: pyroute2 0.7 get_attr() gives the
    base64 as bytes (a dict with 'value' in other versions)."""
    if isinstance(value, dict):
        value = value["value"]
    return value.decode() if isinstance(value, bytes) else value


def parse_kernel_info(messages) -> DeviceStatus:
    status = DeviceStatus()
    for message in messages:
        status.listen_port = message.get_attr("WGDEVICE_A_LISTEN_PORT") or status.listen_port
        key = message.get_attr("WGDEVICE_A_PUBLIC_KEY")
        if key:
            status.public_key = _key_text(key)
        for peer in message.get_attr("WGDEVICE_A_PEERS") or []:
            entry = PeerStatus(_key_text(peer.get_attr("WGPEER_A_PUBLIC_KEY")))
            endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
            if endpoint:
                entry.endpoint = format_endpoint(endpoint["addr"], endpoint["port"])
            handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            if handshake:
                entry.last_handshake = handshake.get("tv_sec", 0) + handshake.get("tv_nsec", 0) / 1e9
            entry.rx_bytes = peer.get_attr("WGPEER_A_RX_BYTES") or 0
            entry.tx_bytes = peer.get_attr("WGPEER_A_TX_BYTES") or 0
            status.peers.append(entry)
    return status


# ---------------------------------------------------------------- selection

_kernel_module_seen = False


def kernel_module_available() -> bool:
    """True when the kernel can make WireGuard interfaces.

    Checked through the generic netlink family, which exists exactly when
    the module is loaded or built in; iproute2's genl asks (importing
    pyroute2 to ask would cost more than a link's whole start-up). A yes
    is kept for the process (a status or a cost pass asks for every link);
    a no is asked again, as a failed check must not pin a long-running
    process to wireguard-go.
    """
    global _kernel_module_seen
    if _kernel_module_seen:
        return True
    if not Path("/sys/module/wireguard").exists():
        # modprobe where the module exists but is not loaded yet.
        try:
            run(["modprobe", "wireguard"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
    _kernel_module_seen = genl_family_exists("wireguard")
    return _kernel_module_seen


def genl_family_exists(name: str) -> bool:
    genl = netlink.system_tool("genl")
    if genl is None:
        log.warning("genl (iproute2) is not installed: the WireGuard kernel module cannot be found, "
                    "so links use wireguard-go")
        return False
    try:
        return run([genl, "ctrl", "get", "name", name], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_backend(setting: str, socket_dir: Path) -> Backend:
    """The backend of the `wireguard.backend` setting; "auto": the kernel
    module where there is one. socket_dir: Paths.wireguard_socket_dir."""
    if setting == "kernel" or (setting == "auto" and kernel_module_available()):
        return KernelBackend()
    return UserspaceBackend(socket_dir)
