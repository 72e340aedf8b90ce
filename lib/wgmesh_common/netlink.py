"""Addresses, interfaces, rules and routes (rtnetlink).

The only module that talks rtnetlink; everything here is idempotent, so the
link-maker can be re-run over a half-made interface and finish the job.

Most of it goes through iproute2's `ip` (JSON out, `-batch` in): the
programs that call it are short-lived (a link unit per link, the
cost-writer after every probe round, each `wgmesh` command), and importing
pyroute2 alone costs a tenth of a second of CPU (its package loads some
sixty modules), more than the whole work of most of them; one `ip` is a
few milliseconds. Looking up an interface needs no process at all.
pyroute2 stays where a process lives long or needs what `ip` does not
do: the overlay's devices and forwarding entries in vxlan-sync, and the
kernel WireGuard backend; handle() and session() are for those.
"""

import errno
import fcntl
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import process
from .errors import WgmeshError

IP_TIMEOUT = 30
DUMP_ATTEMPTS = 3
RTPROT_BOOT = 3
RTN_UNICAST = 1
# ip -N prints types and protocols as numbers; older iproute2 prints some
# names whatever -N says.
ROUTE_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
               "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10}
ROUTE_PROTOCOLS = {"redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "zebra": 11, "bird": 12,
                   "dhcp": 16}
# Interface names are at most 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15
# Reads per drain at most: a host whose routes churn endlessly must not
# starve the caller's loop (and its watchdog).
DRAIN_MAX = 1000
# Route change notifications (linux/rtnetlink.h), for route_events().
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1


def system_tool(name: str) -> str | None:
    """Where an iproute2 tool is: on PATH, else in the system directories
    (an operator's PATH may lack the sbin ones)."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin:/bin")


def _ip(args: list[str], batch: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `ip ARGS` (with -batch, the commands on its stdin); the result,
    whatever its status."""
    ip = system_tool("ip")
    if ip is None:
        raise WgmeshError("ip (iproute2) is not installed")
    argv = [ip, *args] if batch is None else [ip, *args, "-batch", "-"]
    stdin = None if batch is None else "".join(f"{line}\n" for line in batch)
    try:
        return process.run(argv, input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WgmeshError(f"could not run ip {' '.join(args)}: {error}") from None


def _first_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[0].strip() if lines else f"ip exited with status {result.returncode}"


def _ip_dump(args: list[str], missing_is_empty: bool = False) -> list[dict]:
    """`ip -json ARGS` read as JSON. A dump the kernel interrupted (the
    table changed under it: OSPF installs routes in bursts) is read again:
    ip exits 0 with part of it and a warning."""
    for _ in range(DUMP_ATTEMPTS):
        result = _ip(["-json", *args])
        if result.returncode:
            if missing_is_empty and "table does not exist" in result.stderr:
                return []  # the kernel makes a table with its first route
            raise WgmeshError(f"ip {' '.join(args)}: {_first_line(result)}")
        if "Dump was interrupted" not in result.stderr:
            break
    try:
        found = json.loads(result.stdout or "[]")
    except ValueError:
        raise WgmeshError(f"ip {' '.join(args)} printed something that is not JSON") from None
    if not isinstance(found, list):
        raise WgmeshError(f"ip {' '.join(args)} printed something that is not a JSON list")
    return found


# Per thread: pyroute2's IPRoute is not made for two threads at once (the
# join helper serves requests in threads).
_shared = threading.local()


@contextmanager
def session() -> Iterator[None]:
    """Share one pyroute2 rtnetlink socket among every handle() of this
    thread inside; nested sessions use the outer one."""
    if getattr(_shared, "ipr", None) is not None:
        yield
        return
    from pyroute2 import IPRoute

    _shared.ipr = IPRoute()
    try:
        yield
    finally:
        ipr, _shared.ipr = _shared.ipr, None
        ipr.close()


@contextmanager
def handle() -> Iterator:
    """The session's pyroute2 socket, or one of this call's own."""
    shared = getattr(_shared, "ipr", None)
    if shared is not None:
        yield shared
        return
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def interface_index(ifname: str) -> int | None:
    if len(ifname.encode()) > IFNAME_MAX:
        return None
    try:
        return socket.if_nametoindex(ifname)
    except (OSError, ValueError):
        return None


def interface_exists(ifname: str) -> bool:
    return interface_index(ifname) is not None


def interface_is_up(ifname: str) -> bool:
    # Any socket carries the interface ioctls; AF_UNIX is the one every
    # unit's RestrictAddressFamilies= allows.
    if len(ifname.encode()) > IFNAME_MAX:
        return False
    request = struct.pack("16s16x", ifname.encode())
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            answer = fcntl.ioctl(sock, SIOCGIFFLAGS, request)
    except OSError:
        return False
    return bool(struct.unpack_from("H", answer, 16)[0] & IFF_UP)


def _address_command(verb: str, ifname: str, cidr: str) -> str:
    iface = ipaddress.ip_interface(cidr)
    # No duplicate detection: these are ours by construction, and waiting
    # out DAD would delay OSPFv3 adjacencies by a second or more.
    nodad = " nodad" if iface.version == 6 and verb == "replace" else ""
    return f"address {verb} {iface.with_prefixlen} dev {ifname}{nodad}"


def _batch(ifname: str, commands: list[str]) -> None:
    if interface_index(ifname) is None:
        raise WgmeshError(f"interface {ifname} does not exist")
    result = _ip([], commands)
    if result.returncode:
        raise WgmeshError(f"{ifname}: {_first_line(result)}")


def addresses_of(ifname: str) -> list[str]:
    """The interface's addresses as CIDR strings."""
    if interface_index(ifname) is None:
        return []
    return [cidr for cidr, _ in _cidrs(_ip_dump(["address", "show", "dev", ifname]))]


def all_addresses() -> list[tuple[str, str]]:
    """Every IPv4 and IPv6 address of the host, as (CIDR, interface)."""
    return _cidrs(_ip_dump(["address", "show"]))


def _cidrs(links: list[dict]) -> list[tuple[str, str]]:
    """(CIDR, interface) of each IPv4 and IPv6 address in `ip -json address` output."""
    return [(f"{a['local']}/{a['prefixlen']}", link.get("ifname"))
            for link in links for a in link.get("addr_info", [])
            if a.get("family") in ("inet", "inet6") and "local" in a and "prefixlen" in a]


def ensure_addresses(ifname: str, cidrs: list[str]) -> None:
    _batch(ifname, [_address_command("replace", ifname, cidr) for cidr in cidrs]
           + [f"link set dev {ifname} up"])


def _present(ifname: str, cidrs: list[str]) -> list[str]:
    present = {str(ipaddress.ip_interface(cidr)) for cidr in addresses_of(ifname)}
    return [cidr for cidr in cidrs if str(ipaddress.ip_interface(cidr)) in present]


def remove_addresses(ifname: str, cidrs: list[str]) -> None:
    there = _present(ifname, cidrs)
    if not there:
        return
    # -force: on past one that went meanwhile; what is left is the error.
    result = _ip(["-force"], [_address_command("delete", ifname, cidr) for cidr in there])
    left = _present(ifname, there) if result.returncode else []
    if left:
        raise WgmeshError(f"{ifname}: cannot remove {', '.join(left)}: {_first_line(result)}")


def disable_ipv6_autoconf(ifname: str) -> None:
    """addr_gen_mode=none: the interface gets only the link-local we give it."""
    path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/addr_gen_mode")
    try:
        path.write_text("1\n")
    except OSError:
        pass


def loose_reverse_path(ifname: str) -> None:
    """rp_filter=2 on a link: OSPF costs are per direction, so a packet may
    come back over another link than the one this node would send it on,
    and strict reverse-path filtering (rp_filter=1, set by some hardened
    hosts) would drop it; the kernel uses the larger of `all` and the
    interface's value, so 2 makes it loose whatever `all` says. Where
    /proc/sys/net is read-only (containers) the host's setting stands."""
    path = Path(f"/proc/sys/net/ipv4/conf/{ifname}/rp_filter")
    try:
        if path.read_text().strip() == "1" or Path("/proc/sys/net/ipv4/conf/all/rp_filter").read_text().strip() == "1":
            path.write_text("2\n")
    except OSError:
        pass


def enable_forwarding() -> None:
    """Route between links: a node carries transit traffic for the mesh.

    Turning on IPv6 forwarding makes Linux ignore router advertisements on
    interfaces with accept_ra=1, which would silently drop a SLAAC-learned
    underlay default route; those interfaces are moved to accept_ra=2 first.
    Each family is tried even when the other fails; the first OSError is
    raised (forwarding.enable turns it into advice for the operator).
    """
    errors = []
    conf = Path("/proc/sys/net/ipv6/conf")
    try:
        if conf.is_dir() and (conf / "all/forwarding").read_text().strip() != "1":
            for accept_ra in conf.glob("*/accept_ra"):
                if accept_ra.parent.name in ("all", "lo"):
                    continue
                try:
                    if accept_ra.read_text().strip() == "1":
                        accept_ra.write_text("2\n")
                except OSError:
                    pass
            (conf / "all/forwarding").write_text("1\n")
    except OSError as error:
        errors.append(error)
    ip_forward = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if ip_forward.read_text().strip() != "1":
            ip_forward.write_text("1\n")
    except OSError as error:
        errors.append(error)
    if errors:
        raise errors[0]


def configure_interface(ifname: str, mtu: int, cidrs: list[str]) -> None:
    disable_ipv6_autoconf(ifname)
    loose_reverse_path(ifname)
    _batch(ifname, [f"link set dev {ifname} mtu {int(mtu)}"]
           + [_address_command("replace", ifname, cidr) for cidr in cidrs]
           + [f"link set dev {ifname} up"])


def delete_interface(ifname: str) -> bool:
    if interface_index(ifname) is None:
        return False
    result = _ip(["link", "delete", "dev", ifname])
    if result.returncode and interface_index(ifname) is not None:
        raise WgmeshError(f"cannot delete {ifname}: {_first_line(result)}")
    return True


@dataclass(frozen=True)
class Route:
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    interface: str | None
    protocol: int


def parse_routes(entries: list[dict], family: int) -> list[Route]:
    """The unicast routes in `ip -json -N route show` output (-N: protocol
    and type as numbers; iproute2 leaves out a unicast type and a boot
    protocol). A multipath route is taken by its first next hop."""
    result = []
    for entry in filter(_is_unicast, entries):
        dst = entry.get("dst", "default")
        if dst == "default":
            dst = "0.0.0.0/0" if family == 4 else "::/0"
        gateway, interface = _first_hop(entry)
        result.append(Route(ipaddress.ip_network(dst, strict=False), gateway, interface,
                            _number(entry.get("protocol", RTPROT_BOOT), ROUTE_PROTOCOLS)))
    return result


def _is_unicast(entry: dict) -> bool:
    return _number(entry.get("type", RTN_UNICAST), ROUTE_TYPES) == RTN_UNICAST


def _first_hop(entry: dict) -> tuple[str | None, str | None]:
    """(gateway, interface) of a route; a multipath route's first next hop."""
    if entry.get("dev") is None and entry.get("nexthops"):
        entry = entry["nexthops"][0]
    return entry.get("gateway"), entry.get("dev")


def _number(value, names: dict[str, int]) -> int:
    """A type or protocol as ip printed it: a number, or a name (-1 for a
    name this module does not know)."""
    text = str(value)
    return int(text) if text.isdigit() else names.get(text, -1)


def routes(family: int, table: int) -> list[Route]:
    """The unicast routes of one table."""
    return parse_routes(_ip_dump(["-N", f"-{family}", "route", "show", "table", str(int(table))],
                                 missing_is_empty=True), family)


@contextmanager
def route_events() -> Iterator[socket.socket]:
    """A socket that becomes readable when an IPv4 or IPv6 route changes
    (drain it with drain_events); nothing in it is parsed: a change is a
    reason to read the routes again."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def drain_events(sock: socket.socket) -> None:
    """Read whatever notifications are waiting. An overflowed socket
    (ENOBUFS: more changes than it could hold) means the same as any
    change: read the routes again."""
    for _ in range(DRAIN_MAX):
        try:
            if not sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise


# The mesh's routes live in a kernel table of their own, looked up before
# `main` by a rule per family: any other bird on the host (Debian's own
# bird.service runs wherever bird2 is installed) deletes, at every scan of
# the tables it syncs, each bird-made route it did not make itself. Not
# 51820, which wg-quick takes for its own table. The rule ignores a default
# route (suppress_prefixlength 0): the mesh never carries one, and
# whatever put one there would otherwise take all of the host's traffic.
MESH_TABLE = 30573
MESH_RULE_PRIORITY = 1000
MAIN_TABLE = 254
MESH_RULE_KEYS = {"priority", "src", "table", "suppress_prefixlen", "flags"}


def _has_mesh_rule(family: int) -> bool:
    # Exactly ours: a rule of the same priority and table that selects
    # (fwmark, iif, not, ...) or lacks the default-route guard is not it.
    for rule in _ip_dump(["-N", f"-{family}", "rule", "show"]):
        if (str(rule.get("table")) == str(MESH_TABLE) and rule.get("priority") == MESH_RULE_PRIORITY
                and rule.get("src", "all") == "all" and rule.get("suppress_prefixlen") == 0
                and set(rule) <= MESH_RULE_KEYS):
            return True
    return False


def ensure_rules() -> None:
    """The rules that look up the mesh's table (IPv4 and IPv6); lookups it
    has no route for fall through to the next rules."""
    for family in (4, 6):
        if _has_mesh_rule(family):
            continue
        result = _ip([f"-{family}", "rule", "add", "priority", str(MESH_RULE_PRIORITY),
                      "table", str(MESH_TABLE), "suppress_prefixlength", "0"])
        # A concurrent run may have added it meanwhile.
        if result.returncode and not _has_mesh_rule(family):
            raise WgmeshError(f"cannot add the mesh's IPv{family} routing rule: {_first_line(result)}")


def remove_rules() -> None:
    for family in (4, 6):
        while _has_mesh_rule(family):
            result = _ip([f"-{family}", "rule", "delete", "priority", str(MESH_RULE_PRIORITY),
                          "table", str(MESH_TABLE), "suppress_prefixlength", "0"])
            if result.returncode:
                break  # gone meanwhile, or not ours to delete


def mesh_table() -> int:
    """The table bird writes to and the mesh's routes are read from: the
    mesh's own once its rules are there (an upgrade or a rule flush must
    not leave routes where nothing looks them up), `main` until then."""
    return MESH_TABLE if _has_mesh_rule(4) else MAIN_TABLE


def mesh_routes() -> dict[int, list[Route]]:
    """The mesh's routes per family (4, 6), its table looked up once."""
    table = mesh_table()
    return {family: routes(family, table) for family in (4, 6)}


def route_interface(address: str) -> str | None:
    """The interface the kernel would send a packet to address out of."""
    try:
        destination = str(ipaddress.ip_address(address))
    except ValueError:
        return None
    try:
        found = _ip_dump(["route", "get", destination])
    except WgmeshError:
        return None  # no route to it
    return found[0].get("dev") if found and isinstance(found[0], dict) else None


def underlay_addresses() -> dict[int, str]:
    """This node's own public addresses: a global address on the interface of
    each family's default route. Learned locally; nothing is asked of anyone."""
    found: dict[int, str] = {}
    for family in (4, 6):
        defaults = _ip_dump(["-N", f"-{family}", "route", "show", "table", str(MAIN_TABLE), "default"])
        for route in filter(_is_unicast, defaults):
            if route.get("prefsrc"):
                found[family] = route["prefsrc"]
                break
            _, device = _first_hop(route)
            address = _global_address(family, device) if device else None
            if address:
                found[family] = address
                break
    return found


def _global_address(family: int, ifname: str) -> str | None:
    for link in _ip_dump([f"-{family}", "address", "show", "dev", ifname, "scope", "global"]):
        for entry in link.get("addr_info", []):
            if entry.get("local") and not ipaddress.ip_address(entry["local"]).is_link_local:
                return entry["local"]
    return None
