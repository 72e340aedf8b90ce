"""Whether this node can forward (carry transit traffic for the mesh), and
what the operator must change when it cannot.

In a container whose /proc/sys is read-only (systemd-nspawn's default,
unprivileged LXC) the node cannot switch forwarding on. It still works as
a leaf: its links carry traffic to and from itself only. The node unit
decides at start and records the answer in /run/wgmesh/forwarding.toml
(this module is its only reader and writer): bird then announces the node
as a stub router, its links cost what a client's do, its join API tells
peers "forwarding": false, and `wgmesh status` says why. Under /run, so
every boot decides afresh (a node moved into or out of such a container).
"""

import os
from pathlib import Path

from . import netlink
from .errors import ConfigError
from .paths import Paths
from .tomlio import read_toml, remove, write_toml

# sysctl name -> its file. Both must be on: transit in one family only
# would make OSPFv2 and OSPFv3 disagree about the same node.
SYSCTLS = {
    "net.ipv4.ip_forward": Path("/proc/sys/net/ipv4/ip_forward"),
    "net.ipv6.conf.all.forwarding": Path("/proc/sys/net/ipv6/conf/all/forwarding"),
}

RESTART = "then restart wgmesh-node.service (or run 'wgmesh up')"


def advice(off: list[str], read_only: bool, error: str | None, container: str | None) -> str:
    """The one line that tells the operator what to change (pure).
    off: the sysctls that are 0; read_only: /proc/sys/net cannot be
    written here; error: why writing them failed otherwise; container:
    what /run/systemd/container says (systemd-nspawn, lxc, docker, ...)."""
    settings = " and ".join(f"{name}=1" for name in off)
    if read_only:
        where = f"a {container} container" if container else "this system"
        cause = f"/proc/sys/net is read-only in {where}"
    else:
        cause = f"setting them failed ({error})" if error else "they are off"
    if container == "systemd-nspawn" and read_only:
        fix = ("start systemd-nspawn with SYSTEMD_NSPAWN_API_VFS_WRITABLE=network in its environment "
               f"(or set {settings} in the container's network namespace from the host)")
    elif container in ("lxc", "lxc-libvirt") and read_only:
        fix = "add " + " and ".join(f"lxc.sysctl.{name} = 1" for name in off) + " to the container's LXC config"
    elif container in ("docker", "podman") and read_only:
        fix = "start the container with " + " ".join(f"--sysctl {name}=1" for name in off)
    elif read_only:
        fix = f"set {settings} in this node's network namespace from outside it"
    else:
        fix = f"set {settings} (sysctl -w, and a file in /etc/sysctl.d to keep it)"
    return (f"this node cannot forward: {' and '.join(off)} {'is' if len(off) == 1 else 'are'} 0 and {cause}; "
            f"{fix}, {RESTART}; until then it is a leaf that carries no transit")


def container_kind() -> str | None:
    """What kind of container this is, as systemd (PID 1) recorded it;
    without systemd, from the environment a container manager sets."""
    try:
        found = Path("/run/systemd/container").read_text().strip()
    except OSError:
        found = os.environ.get("container", "").strip()
    return found or None


def sysctls_off() -> list[str]:
    """The forwarding sysctls that are not 1. A missing file (IPv6 disabled
    in the kernel) has nothing to forward and is not counted."""
    off = []
    for name, path in SYSCTLS.items():
        try:
            if path.read_text().strip() != "1":
                off.append(name)
        except FileNotFoundError:
            continue
    return off


def read_only(off: list[str]) -> bool:
    return any(not os.access(SYSCTLS[name], os.W_OK) for name in off)


def check(error: str | None = None) -> str | None:
    """After an attempt to switch forwarding on (error: what it raised):
    None when this node forwards, else the line for the operator."""
    off = sysctls_off()
    if not off:
        return None
    return advice(off, read_only(off), error, container_kind())


def foresee() -> str | None:
    """Before anything tried (wgmesh init): the line for the operator only
    where switching forwarding on cannot work, since the node unit does it."""
    off = sysctls_off()
    if off and read_only(off):
        return advice(off, True, None, container_kind())
    return None


def enable() -> str | None:
    """Switch forwarding on where this node may; None, or the problem."""
    try:
        netlink.enable_forwarding()
        error = None
    except OSError as failure:
        error = failure.strerror or str(failure)
    return check(error)


# ------------------------------------------------------------ the state file

def state_file(paths: Paths) -> Path:
    return paths.forwarding_file


def record(paths: Paths, problem: str | None) -> None:
    """Remember the node unit's answer; no file means the node forwards
    (as every node did before this file existed)."""
    if problem is None:
        remove(state_file(paths))
    else:
        write_toml(state_file(paths), {"forwards": False, "problem": problem})


def problem(paths: Paths) -> str | None:
    """Why this node cannot forward, or None when it can. An unreadable
    file is taken as a node that cannot: the careful side, since a leaf
    announced as transit would drop the traffic routed through it."""
    path = state_file(paths)
    if not path.exists():
        return None
    try:
        data = read_toml(path)
    except (ConfigError, OSError) as error:
        return f"this node cannot forward: {error}"
    if data.get("forwards") is not False:
        return None
    text = data.get("problem")
    return text if isinstance(text, str) and text else "this node cannot forward"


def forwards(paths: Paths) -> bool:
    return problem(paths) is None
