"""bird2 configuration rendering and control.

wgmesh runs a bird instance of its own (own config file and control socket
under /run/wgmesh), so an operator's bird setup is never touched. The config
is derived state: rendered from the node config, the link files and the
costs, never hand-edited.
"""

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from .addressing import LINK_PREFIX4, LINK_PREFIX6, MeshPlan
from .errors import WgmeshError

MAX_COST = 65535
CLIENT_COST_PENALTY = 10000
LOOPBACK_LINK_LOCAL = "fe80::1/64"


@dataclass(frozen=True)
class OspfInterface:
    name: str
    cost: int
    # Set on links to clients: the only destinations routes over this link may
    # have (the client's own block, the link's own net), per family.
    client_only4: tuple[str, ...] = ()
    client_only6: tuple[str, ...] = ()
    # The link's own /31 and /127: the kernel's connected routes serve them.
    net4: str | None = None
    net6: str | None = None


def clamp(cost: int) -> int:
    """A cost within OSPF's range, 1..MAX_COST."""
    return max(1, min(MAX_COST, int(cost)))


@dataclass(frozen=True)
class MeshFilter:
    """The part of a kernel export filter that keeps hostile announcements
    out: `head` goes first (which prefixes may be routes at all), `owners`
    last (whose they may be)."""

    head: str
    owners: str


def mesh_filter(plan: MeshPlan, family: int) -> MeshFilter:
    """Only the mesh's own prefixes reach the kernel: node loopbacks and
    link nets, at exactly their lengths; never a default, an aggregate, the
    overlay or anything outside the mesh (so never a route to a node's
    underlay endpoint, which would pull WireGuard's own packets into the
    mesh). A node's loopback is accepted only from that node's router ID
    (its IPv4 loopback, in OSPFv2 and OSPFv3 alike).

    OSPF hands over one route per prefix: when another member announces a
    node's exact loopback at a lower cost, the kernel gets no route to it
    rather than one to the announcer."""
    if family == 4:
        subnet, overlay, link_len = plan.subnet, plan.vxlan_subnet, LINK_PREFIX4
    else:
        subnet, overlay, link_len = plan.subnet6, plan.vxlan6_network(), LINK_PREFIX6
    # bird announces a loopback as a host route (/32, /128); the /30 of
    # lo's IPv4 address is accepted too, from its owner only.
    head = (
        f"\t\t\tif net !~ [ {subnet}{{{link_len - 1},{subnet.max_prefixlen}}} ] then reject;\n"
        f"\t\t\tif net ~ [ {overlay}+ ] then reject;\n"
    )
    lines = []
    for node_id in plan.valid_node_ids():
        if family == 4:
            # No link net lies in the node's loopback /30.
            region = plan.loopback4_network(node_id)
            loopbacks = f"{region}, {plan.loopback4(node_id)}/32"
        else:
            region = ipaddress.IPv6Network((plan.node_block6(node_id).network_address, 126))
            loopbacks = f"{plan.loopback6(node_id)}/128"
        lines.append(f"\t\t\tif net ~ [ {region}+ ] then {{ if net ~ [ {loopbacks} ] && "
                     f"ospf_router_id = {plan.loopback4(node_id)} then accept; reject; }}\n")
    if family == 4:
        # OSPFv2 carries no link nets (the area's hidden summary stubnet
        # keeps them out of every router LSA): an IPv4 /31 announced is an
        # older node's, which no one needs (each end has its connected
        # route), or a member's claim to a link address that is not its own.
        lines.append("\t\t\treject;\n")
    else:
        # Past the loopbacks only link nets remain.
        lines.append(f"\t\t\tif net.len != {link_len} then reject;\n")
    return MeshFilter(head, "".join(lines))


def render(
    plan: MeshPlan,
    node_id: int,
    interfaces: list[OspfInterface],
    hello: int = 1,
    dead: int = 4,
    stub_router: bool = False,
    kernel_table: int = 254,
    announce_loopback: bool = True,
) -> str:
    """The whole bird.conf for this node. Pure: same input, same bytes, so the
    cost-writer can skip reconfiguring when nothing changed.
    announce_loopback: whether lo holds the IPv4 loopback (OSPFv2 announces
    it as a stubnet, which does not follow the address by itself)."""
    loopback4 = plan.loopback4(node_id)
    loopback6 = plan.loopback6(node_id)
    ifaces = sorted(interfaces, key=lambda i: i.name)

    def ospf_interfaces() -> str:
        lines = []
        for iface in ifaces:
            lines.append(
                f'\t\tinterface "{iface.name}" {{ type ptp; cost {clamp(iface.cost)}; '
                f"hello {hello}; dead {dead}; retransmit 2; }};"
            )
        return "\n".join(lines)

    # Clients announce themselves as stub routers. In OSPFv2 that is only a
    # maximal cost, still a path of last resort, so the serving side also
    # keeps out of the kernel every route over a client link that leads
    # anywhere but to the client itself.
    stub = "\tstub router yes;\n" if stub_router else ""

    def connected(family: int) -> str:
        # The mesh's table is looked up before `main`: an OSPF route to one
        # of this node's own link nets (through another node, when the
        # link is dear) would win over the kernel's connected route, and a
        # packet to the link's peer would leave by another link.
        nets = [iface.net4 if family == 4 else iface.net6 for iface in ifaces]
        nets = [net for net in nets if net]
        return f"\t\t\tif net ~ [ {', '.join(nets)} ] then reject;\n" if nets else ""

    def client_guards(family: int) -> str:
        lines = []
        for iface in ifaces:
            allowed = iface.client_only4 if family == 4 else iface.client_only6
            if allowed:
                prefixes = ", ".join(f"{p}+" for p in allowed)
                lines.append(f'\t\t\tif ifname = "{iface.name}" && net !~ [ {prefixes} ] then reject;\n')
        return "".join(lines)
    plan_filters = {family: mesh_filter(plan, family) for family in (4, 6)}
    # OSPFv2 carries an interface's net in the router LSA, and bird
    # originates that LSA at most every 5 s: a link's /31 added when its
    # interface came up made the LSA that names the new neighbour, a second
    # later, wait out the rest of the 5 s. Hidden, the mesh's interface nets
    # never change the LSA (link nets are served by the connected routes at
    # both ends, and nothing reaches a link address from afar); the
    # loopback is announced as a stubnet of its own, present from start,
    # at metric 0 as lo's host stub was: at 10, a member announcing the
    # same /32 at 1 would win the prefix and leave it unrouted.
    # OSPFv3 needs none of this: its router LSA holds no prefixes.
    stubnets4 = f"\t\tstubnet {plan.subnet} {{ summary yes; hidden yes; }};\n"
    if announce_loopback:
        stubnets4 += f"\t\tstubnet {loopback4}/32 {{ cost 0; }};\n"
    return f"""\
# Rendered by wgmesh; do not edit: every link change or cost change rewrites it.
log stderr all;
router id {loopback4};

protocol device {{
\tscan time 10;
}}

protocol kernel wgmesh_kernel4 {{
\tkernel table {kernel_table};
\tipv4 {{
\t\timport none;
\t\texport filter {{
\t\t\tif source != RTS_OSPF then reject;
{plan_filters[4].head}{connected(4)}{client_guards(4)}\t\t\tkrt_prefsrc = {loopback4};
{plan_filters[4].owners}\t\t\taccept;
\t\t}};
\t}};
}}

protocol kernel wgmesh_kernel6 {{
\tkernel table {kernel_table};
\tipv6 {{
\t\timport none;
\t\texport filter {{
\t\t\tif source != RTS_OSPF then reject;
{plan_filters[6].head}{connected(6)}{client_guards(6)}\t\t\tkrt_prefsrc = {loopback6};
{plan_filters[6].owners}\t\t\taccept;
\t\t}};
\t}};
}}

protocol ospf v2 wgmesh4 {{
{stub}\tecmp yes;
\tipv4 {{ import all; export none; }};
\tarea 0 {{
{stubnets4}{ospf_interfaces()}
\t}};
}}

protocol ospf v3 wgmesh6 {{
{stub}\tecmp yes;
\tipv6 {{ import all; export none; }};
\tarea 0 {{
\t\tinterface "lo" {{ stub yes; }};
{ospf_interfaces()}
\t}};
}}
"""


def link_cost(base_cost: int, peer_is_client: bool, self_is_client: bool) -> int:
    """A link's cost before quality is measured; links of clients cost
    CLIENT_COST_PENALTY more so they are never preferred for transit."""
    cost = base_cost
    if peer_is_client or self_is_client:
        cost += CLIENT_COST_PENALTY
    return clamp(cost)


class BirdError(WgmeshError):
    pass


class BirdControl:
    """bird's control-socket protocol: 4-digit reply codes, '-' continues."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.path = Path(path)
        self.timeout = timeout

    def command(self, line: str) -> tuple[int, str]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise BirdError(f"bird is not running (no control socket at {self.path})") from None
            reader = sock.makefile("r", encoding="utf-8", errors="replace")
            self._read_reply(reader)  # the "0001 BIRD x ready." greeting
            sock.sendall((line + "\n").encode())
            return self._read_reply(reader)

    @staticmethod
    def _read_reply(reader) -> tuple[int, str]:
        lines = []
        code = 0
        complete = False
        for raw in reader:
            raw = raw.rstrip("\n")
            if raw.startswith(" "):
                lines.append(raw[1:])
                continue
            if len(raw) >= 5 and raw[:4].isdigit():
                code = int(raw[:4])
                lines.append(raw[5:])
                if raw[4] == " ":
                    complete = True
                    break
            else:
                lines.append(raw)
        if not complete:
            raise BirdError("bird closed its control socket in the middle of a reply")
        return code, "\n".join(lines)

    def configure(self) -> str:
        code, text = self.command("configure")
        if code >= 8000:
            raise BirdError(f"bird refused the new config: {text.splitlines()[-1] if text else code}")
        return text

    def alive(self) -> bool:
        try:
            self.command("show status")
            return True
        except (BirdError, OSError):
            return False

    def routes(self, protocol: str = "wgmesh4") -> list[tuple[str, str]]:
        """The best routes a protocol gave bird, before any kernel filter."""
        _, text = self.command(f"show route primary protocol {protocol}")
        return parse_routes(text)

    def ospf_neighbors(self, protocol: str = "wgmesh4") -> list[dict]:
        _, text = self.command(f"show ospf neighbors {protocol}")
        return parse_ospf_neighbors(text)


def parse_routes(text: str) -> list[tuple[str, str]]:
    """(prefix, interface) per next hop of `show route` (bird 2): a route
    line starts with its prefix, its next hops follow as `via X on IF` or
    `dev IF` lines; an alternative route of the same prefix starts with
    its type instead of a prefix, and keeps the prefix before it."""
    found, prefix = [], None
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if not line[0].isspace() and "/" in fields[0] and len(fields) > 1:
            prefix = fields[0]
        elif prefix and fields[0] == "via" and "on" in fields[2:3]:
            found.append((prefix, fields[3]))
        elif prefix and fields[0] == "dev" and len(fields) > 1:
            found.append((prefix, fields[1]))
    return found


def parse_ospf_neighbors(text: str) -> list[dict]:
    """Rows of `show ospf neighbors`: router id, state and interface."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        # Router ID   Pri   State   DTime   Interface   Router IP
        if len(fields) >= 5 and fields[0].count(".") == 3 and "/" in fields[2]:
            rows.append({"router_id": fields[0], "state": fields[2].split("/")[0], "interface": fields[4]})
    return rows
