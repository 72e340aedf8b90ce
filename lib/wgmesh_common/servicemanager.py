"""What wgmesh asks of systemd as the service manager, through python3-systemd:
is it running, the sockets it passed (socket activation), and the state
notifications of a Type=notify service (READY=1, WATCHDOG=1, STATUS=...).

Every function answers "no" where python3-systemd or systemd is missing,
so the same programs run without it (tests, machines without systemd).
"""

import os
import socket

try:
    from systemd import daemon
except ImportError:  # the programs also run without python3-systemd
    daemon = None


def booted() -> bool:
    """True when systemd is the init system of this machine (container)."""
    if daemon is not None:
        return daemon.booted()
    return os.path.isdir("/run/systemd/system")


def passed_sockets() -> list[socket.socket]:
    """The sockets systemd passed to this process (socket activation)."""
    if daemon is None:
        return []
    return [socket.socket(fileno=fd) for fd in daemon.listen_fds()]


def notify(state: str, unset_environment: bool = False) -> bool:
    """Tell systemd state ("READY=1", "WATCHDOG=1", "STATUS=...", several
    joined by newlines); False when not run by systemd as a notify service.
    unset_environment: what this process starts afterwards must not
    inherit NOTIFY_SOCKET and speak to systemd as if it were this service."""
    if daemon is None or not os.environ.get("NOTIFY_SOCKET"):
        return False
    sent = daemon.notify(state, unset_environment=unset_environment)
    if unset_environment:
        # sd_notify unsets the C environment only; os.environ is Python's
        # copy, which children started with env= get.
        os.environ.pop("NOTIFY_SOCKET", None)
    return sent
