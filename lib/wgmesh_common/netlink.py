"""Addresses, interfaces and routes through pyroute2 (rtnetlink).

The only module that talks rtnetlink; everything here is idempotent, so the
link-maker can be re-run over a half-made interface and finish the job.

Every call opens its own socket, unless it runs inside session(): then the
calls of that thread share one (a mesh pass, a vxlan-sync round or a link's
bring-up make dozens of calls, and each socket is a bind and pyroute2's
set-up).

pyroute2 is imported in the functions that use it: it is the slowest import
of all (a few hundred milliseconds), and many callers of this module never
reach netlink (a `--help`, a dry run, a unit test of the core).
"""

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import WgmeshError

IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


# Per thread: pyroute2's IPRoute is not made for two threads at once (the
# join helper serves requests in threads).
_shared = threading.local()


@contextmanager
def session() -> Iterator[None]:
    """Share one rtnetlink socket among every call of this thread inside;
    nested sessions use the outer one."""
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
    """The session's socket, or one of this call's own."""
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



def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def interface_exists(ifname: str) -> bool:
    with handle() as ipr:
        return _index(ipr, ifname) is not None


def interface_is_up(ifname: str) -> bool:
    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return False
        return bool(ipr.get_links(index)[0]["flags"] & 1)


def _add_address(ipr, index: int, cidr: str) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    iface = ipaddress.ip_interface(cidr)
    kwargs = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        # No duplicate detection: these are ours by construction, and waiting
        # out DAD would delay OSPFv3 adjacencies by a second or more.
        kwargs["flags"] = IFA_F_NODAD
    try:
        ipr.addr("add", **kwargs)
    except NetlinkError as error:
        if error.code != errno.EEXIST:
            raise WgmeshError(f"cannot add {cidr}: {error.args[1] if len(error.args) > 1 else error}") from None


def addresses_of(ifname: str) -> list[str]:
    """The interface's addresses as CIDR strings."""
    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return []
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)]


def ensure_addresses(ifname: str, cidrs: list[str]) -> None:
    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise WgmeshError(f"interface {ifname} does not exist")
        for cidr in cidrs:
            _add_address(ipr, index, cidr)
        ipr.link("set", index=index, state="up")


def remove_addresses(ifname: str, cidrs: list[str]) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return
        for cidr in cidrs:
            iface = ipaddress.ip_interface(cidr)
            try:
                ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            except NetlinkError as error:
                if error.code not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                    raise


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
    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise WgmeshError(f"interface {ifname} does not exist")
        ipr.link("set", index=index, mtu=mtu)
        for cidr in cidrs:
            _add_address(ipr, index, cidr)
        ipr.link("set", index=index, state="up")


def delete_interface(ifname: str) -> bool:
    from pyroute2.netlink.exceptions import NetlinkError

    with handle() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as error:
            if error.code != errno.ENODEV:
                raise
        return True


@dataclass(frozen=True)
class Route:
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None
    interface: str | None
    protocol: int


def routes(family: int, table: int) -> list[Route]:
    """The unicast routes of one table."""
    result = []
    with handle() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        for route in ipr.get_routes(family=af, table=table):
            if route["type"] != 1:  # RTN_UNICAST
                continue
            dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == 4 else "::")
            network = ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)
            gateway = route.get_attr("RTA_GATEWAY")
            oif = route.get_attr("RTA_OIF")
            if oif is None:
                multipath = route.get_attr("RTA_MULTIPATH")
                if multipath:
                    oif = multipath[0]["oif"]
                    gateway = multipath[0].get_attr("RTA_GATEWAY")
            result.append(Route(network, gateway, names.get(oif), route["proto"]))
    return result


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


def _mesh_rules(ipr, af) -> list:
    return [r for r in ipr.get_rules(family=af)
            if r.get_attr("FRA_TABLE", r["table"]) == MESH_TABLE and r.get_attr("FRA_PRIORITY") == MESH_RULE_PRIORITY
            and r["src_len"] == 0 and r["dst_len"] == 0]


def ensure_rules() -> None:
    """The rules that look up the mesh's table (IPv4 and IPv6); lookups it
    has no route for fall through to the next rules."""
    from pyroute2.netlink.exceptions import NetlinkError

    with handle() as ipr:
        for af in (socket.AF_INET, socket.AF_INET6):
            if _mesh_rules(ipr, af):
                continue
            try:
                ipr.rule("add", family=af, table=MESH_TABLE, priority=MESH_RULE_PRIORITY,
                         suppress_prefixlength=0)
            except NetlinkError as error:
                if error.code != errno.EEXIST:  # a concurrent run added it
                    raise


def remove_rules() -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    with handle() as ipr:
        for af in (socket.AF_INET, socket.AF_INET6):
            for _ in _mesh_rules(ipr, af):
                try:
                    ipr.rule("del", family=af, table=MESH_TABLE, priority=MESH_RULE_PRIORITY)
                except NetlinkError:
                    pass  # gone meanwhile


def mesh_table() -> int:
    """The table bird writes to and the mesh's routes are read from: the
    mesh's own once its rules are there (an upgrade or a rule flush must
    not leave routes where nothing looks them up), `main` until then."""
    with handle() as ipr:
        return MESH_TABLE if _mesh_rules(ipr, socket.AF_INET) else MAIN_TABLE


def mesh_routes(family: int) -> list[Route]:
    return routes(family, mesh_table())


def route_interface(address: str) -> str | None:
    """The interface the kernel would send a packet to address out of."""
    from pyroute2.netlink.exceptions import NetlinkError

    with handle() as ipr:
        try:
            answer = ipr.route("get", dst=address)
        except NetlinkError:
            return None
        if not answer:
            return None
        oif = answer[0].get_attr("RTA_OIF")
        if oif is None:
            return None
        links = ipr.get_links(oif)
        return links[0].get_attr("IFLA_IFNAME") if links else None


def underlay_addresses() -> dict[int, str]:
    """This node's own public addresses: a global address on the interface of
    each family's default route. Learned locally; nothing is asked of anyone."""
    found: dict[int, str] = {}
    with handle() as ipr:
        for family, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            for route in ipr.get_routes(family=af, table=254):
                if route["dst_len"] != 0 or route["type"] != 1:
                    continue
                preferred = route.get_attr("RTA_PREFSRC")
                if preferred:
                    found[family] = preferred
                    break
                oif = route.get_attr("RTA_OIF")
                for addr in ipr.get_addr(family=af, index=oif) if oif else []:
                    ip = ipaddress.ip_address(addr.get_attr("IFA_ADDRESS"))
                    if addr["scope"] == RT_SCOPE_UNIVERSE and not ip.is_link_local:
                        found[family] = str(ip)
                        break
                if family in found:
                    break
    return found
