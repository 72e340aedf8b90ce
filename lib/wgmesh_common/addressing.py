"""The addressing plan: which addresses a node and each of its links get.

Pure functions of the mesh parameters. With the defaults (10.0.0.0/16, a /23
per node) node N owns 10.0.N.0/23: 10.0.N.1 on its loopback, link /31s from
10.0.N.4 upward, all allocated by the node that serves the link. IPv6 mirrors
it: node N owns the /64 at index N of the /48, its loopback is ::1 there and a
link's /127 sits at the same offset as the link's IPv4 /31.

On the VXLAN overlay node N's host part is N (10.0.251.N, fd10:0:0:fb::N),
except node 0: host part 0 is the IPv4 network address and the IPv6
subnet-router anycast address, so node 0 takes the lowest host part that no
node ID placeable in the layout has (1 with the default /23 blocks, whose IDs
are even), on both overlays. One layout leaves none free: /24 node blocks
with the VXLAN /24 in a block no ID uses (beyond ID 254), where IDs 1-254
hold every host part. There node 0 takes 0x100 on the IPv6 overlay (above
every ID, an ordinary address of the /64) and keeps host part 0 on the IPv4
one, the address it had before: refusing the ID there would leave an
installed node 0 unable to load its config, so `wgmesh init` refuses it for
a new node and `wgmesh status` warns on an existing one (overlay_problem).
"""

import ipaddress
from dataclasses import dataclass

from .errors import ConfigError

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
MAX_NODE_ID = 254  # the highest node ID of any layout
FIRST_LINK_OFFSET = 4  # .0-.3 are the node's loopback /30
# A link is a /31 (and the /127 at the same offset): its two ends, no more.
LINK_PREFIX4 = 31
LINK_PREFIX6 = 127
# Node 0's IPv6 overlay host part where no ID-sized one is free: above every
# ID's, far below the /64's reserved anycast addresses at its top (RFC 2526).
NODE0_SPARE_HOST6 = 0x100


@dataclass(frozen=True)
class LinkAddresses:
    """Both ends of one link, from the listener's block. role is a link's
    role (linkfile.ROLES; that module imports this one)."""

    offset: int
    listener4: IPv4
    dialer4: IPv4
    listener6: IPv6
    dialer6: IPv6

    def local4(self, role: str) -> IPv4:
        return self.listener4 if role == "listener" else self.dialer4

    def peer4(self, role: str) -> IPv4:
        return self.dialer4 if role == "listener" else self.listener4

    def local6(self, role: str) -> IPv6:
        return self.listener6 if role == "listener" else self.dialer6

    def peer6(self, role: str) -> IPv6:
        return self.dialer6 if role == "listener" else self.listener6


@dataclass(frozen=True)
class MeshPlan:
    subnet: ipaddress.IPv4Network
    node_prefix: int
    subnet6: ipaddress.IPv6Network
    vxlan_subnet: ipaddress.IPv4Network
    client_id_start: int = 200

    @classmethod
    def from_config(cls, config) -> "MeshPlan":
        return cls(config.subnet, config.node_prefix, config.subnet6, config.vxlan_subnet, config.client_id_start)

    @classmethod
    def default(cls) -> "MeshPlan":
        return cls(
            ipaddress.IPv4Network("10.0.0.0/16"),
            23,
            ipaddress.IPv6Network("fd10::/48"),
            ipaddress.IPv4Network("10.0.251.0/24"),
        )

    @property
    def id_step(self) -> int:
        """How far apart node IDs are: a /23 block spans two /24s."""
        return 1 << (24 - self.node_prefix)

    @property
    def block_size(self) -> int:
        return 1 << (32 - self.node_prefix)

    def check_layout(self, source: str = "wgmesh.toml") -> None:
        if self.subnet.prefixlen > self.node_prefix:
            raise ConfigError(f"{source}: mesh.subnet {self.subnet} is smaller than one node block (/{self.node_prefix})")
        if self.subnet6.prefixlen > 56:
            raise ConfigError(f"{source}: mesh.subnet6 {self.subnet6} must be a /56 or larger, to hold a /64 per node")
        if not self.vxlan_subnet.subnet_of(self.subnet):
            raise ConfigError(f"{source}: mesh.vxlan_subnet {self.vxlan_subnet} must lie inside mesh.subnet {self.subnet}")
        if self.vxlan_subnet.prefixlen > 24:
            raise ConfigError(f"{source}: mesh.vxlan_subnet {self.vxlan_subnet} must be a /24 or larger (one address per node)")

    def check_node_id(self, node_id: int, source: str = "wgmesh.toml") -> None:
        problem = self.node_id_problem(node_id)
        if problem:
            raise ConfigError(f"{source}: node.id {problem}")

    def node_id_problem(self, node_id: int) -> str | None:
        """Why node_id cannot be used in this mesh, or None."""
        if not 0 <= node_id <= MAX_NODE_ID:
            return f"{node_id} is out of range (0-{MAX_NODE_ID})"
        if node_id % self.id_step:
            return f"{node_id} is not a multiple of {self.id_step}: with /{self.node_prefix} node blocks IDs step by {self.id_step}"
        block = self.node_block(node_id)
        if not block.subnet_of(self.subnet):
            return f"{node_id} does not fit in mesh subnet {self.subnet}"
        if block.overlaps(self.vxlan_subnet):
            return f"{node_id} would overlap the VXLAN subnet {self.vxlan_subnet}"
        return None

    def overlay_problem(self, node_id: int) -> str | None:
        """Why node_id's IPv4 overlay address is not an ordinary host address,
        or None: reason to refuse a new node, only a warning for one already
        installed (see the module's doc)."""
        if node_id != 0 or self._spare_host() is not None:
            return None
        return (f"node 0's VXLAN IPv4 address {self.vxlan4(0)} is the network address of {self.vxlan_subnet}: "
                f"IDs 1-{MAX_NODE_ID} hold every host address there (give node 0 another ID, or move "
                f"mesh.vxlan_subnet into a node block no ID uses)")

    def _placeable_ids(self) -> list[int]:
        """IDs whose block fits the layout."""
        return [i for i in range(MAX_NODE_ID + 1) if i % self.id_step == 0
                and self.node_block(i).subnet_of(self.subnet) and not self.node_block(i).overlaps(self.vxlan_subnet)]

    def valid_node_ids(self) -> list[int]:
        return [i for i in range(MAX_NODE_ID + 1) if self.node_id_problem(i) is None]

    def _spare_host(self) -> int | None:
        """The lowest ordinary IPv4 overlay host part no placeable ID has."""
        taken = set(self._placeable_ids())
        hosts = range(1, self.vxlan_subnet.num_addresses - 1)  # not the network, not the broadcast
        return next((h for h in hosts if h not in taken), None)

    def vxlan_host4(self, node_id: int) -> int:
        """Node node_id's host part on the IPv4 overlay (module doc)."""
        if node_id != 0:
            return node_id  # an ordinary host part: the overlay is a /24 or larger
        spare = self._spare_host()
        return 0 if spare is None else spare

    def vxlan_host6(self, node_id: int) -> int:
        """Node node_id's host part on the IPv6 overlay (module doc)."""
        if node_id != 0:
            return node_id
        spare = self._spare_host()
        return NODE0_SPARE_HOST6 if spare is None else spare

    def is_client(self, node_id: int) -> bool:
        return node_id >= self.client_id_start

    def node_block(self, node_id: int) -> ipaddress.IPv4Network:
        base = int(self.subnet.network_address) + node_id * 256
        return ipaddress.IPv4Network((base, self.node_prefix))

    def loopback4(self, node_id: int) -> IPv4:
        return self.node_block(node_id).network_address + 1

    def loopback4_network(self, node_id: int) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((self.node_block(node_id).network_address, 30))

    def node_block6(self, node_id: int) -> ipaddress.IPv6Network:
        base = int(self.subnet6.network_address) + (node_id << 64)
        return ipaddress.IPv6Network((base, 64))

    def loopback6(self, node_id: int) -> IPv6:
        return self.node_block6(node_id).network_address + 1

    def vxlan4(self, node_id: int) -> IPv4:
        return self.vxlan_subnet.network_address + self.vxlan_host4(node_id)

    def vxlan6_network(self) -> ipaddress.IPv6Network:
        index = (int(self.vxlan_subnet.network_address) - int(self.subnet.network_address)) >> 8
        return ipaddress.IPv6Network((int(self.subnet6.network_address) + (index << 64), 64))

    def vxlan6(self, node_id: int) -> IPv6:
        return self.vxlan6_network().network_address + self.vxlan_host6(node_id)

    def link_offsets(self) -> range:
        """Offsets of the /31s a node can serve: every even one after the loopback."""
        return range(FIRST_LINK_OFFSET, self.block_size - 1, 2)

    def link_addresses(self, listener_id: int, offset: int) -> LinkAddresses:
        if offset not in self.link_offsets():
            raise ValueError(f"link offset {offset} is not a /31 in a node block")
        base4 = self.node_block(listener_id).network_address
        base6 = self.node_block6(listener_id).network_address
        return LinkAddresses(offset, base4 + offset, base4 + offset + 1, base6 + offset, base6 + offset + 1)

    def owner_of(self, address: ipaddress.IPv4Address) -> int | None:
        """The node ID whose block holds address, if any."""
        if address not in self.subnet:
            return None
        node_id = (int(address) - int(self.subnet.network_address)) >> 8
        node_id -= node_id % self.id_step
        return node_id if self.node_id_problem(node_id) is None else None


def link_local6(address4: IPv4) -> IPv6:
    """A link-local address for a WireGuard interface, which gets none itself.

    OSPFv3 speaks from link-local addresses; deriving it from the interface's
    own /31 address makes it unique on the link and stable across restarts.
    """
    return IPv6(int(IPv6("fe80::")) + int(address4))
