"""The node's packet filter: an nftables table of wgmesh's own, `inet wgmesh`.

A mesh node forwards (it carries transit traffic between links), so without
a filter a host on the underlay that routes the mesh's ranges to a node
reaches the node's join API on its mesh address, the VXLAN port and every
other node through it. The table drops, on input and on forward, every
packet to or from the mesh's ranges that does not come in over a mesh link
(the wgm* interfaces, and lo for the node's own traffic) or, when
forwarded, does not go out over one; and VXLAN unless it comes from a
node's loopback over a mesh link. Everything else (WireGuard's own UDP, a
public join API on the underlay address) passes untouched: the table only
drops, so an operator's own firewall keeps the last word.

render() is pure; apply() replaces the table in one nft transaction (so
re-applying is atomic and idempotent) and remove() deletes it.
"""

import shutil
import subprocess

from .addressing import MeshPlan
from .errors import WgmeshError
from .process import run
from .vxlan import DEVICES as OVERLAY_DEVICES
from .vxlan import VXLAN_PORT

TABLE = "wgmesh"
# Every interface wgmesh makes is named wgm*: the WireGuard links and the
# overlay devices (whose frames only come from nodes, over the links).
MESH_INTERFACES = "wgm*"


def _elements(items) -> str:
    return ", ".join(str(item) for item in items)


def render(plan: MeshPlan, vxlan_port: int = VXLAN_PORT) -> str:
    """The nft script that (re)defines the table, as one transaction."""
    nodes = plan.valid_node_ids()
    overlay = _elements(f'"{device.name}"' for device in OVERLAY_DEVICES)
    return f"""\
# Rendered by wgmesh (firewall.py); loaded by `wgmesh-link loopback up`.
# The first two lines make sure the table exists so that deleting it cannot
# fail: the whole file is one transaction, which replaces the table at once.
table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
\tset mesh4 {{ type ipv4_addr; flags interval; elements = {{ {plan.subnet} }}; }}
\tset mesh6 {{ type ipv6_addr; flags interval; elements = {{ {plan.subnet6} }}; }}
\tset loopbacks4 {{ type ipv4_addr; elements = {{ {_elements(plan.loopback4(n) for n in nodes)} }}; }}
\tset loopbacks6 {{ type ipv6_addr; elements = {{ {_elements(plan.loopback6(n) for n in nodes)} }}; }}

\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname "{MESH_INTERFACES}" jump mesh_sources_only
\t\tudp dport {vxlan_port} jump vxlan
\t\tip saddr @mesh4 jump from_mesh_links
\t\tip daddr @mesh4 jump from_mesh_links
\t\tip6 saddr @mesh6 jump from_mesh_links
\t\tip6 daddr @mesh6 jump from_mesh_links
\t}}

\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "{MESH_INTERFACES}" jump mesh_sources_only
\t\toifname "{MESH_INTERFACES}" jump mesh_destinations_only
\t\tip saddr @mesh4 jump between_mesh_links
\t\tip daddr @mesh4 jump between_mesh_links
\t\tip6 saddr @mesh6 jump between_mesh_links
\t\tip6 daddr @mesh6 jump between_mesh_links
\t}}

\t# The overlay tunnels between node loopbacks, over the links.
\tchain vxlan {{
\t\tiifname != "{MESH_INTERFACES}" drop
\t\tip saddr != @loopbacks4 drop
\t\tip6 saddr != @loopbacks6 drop
\t}}

\tchain from_mesh_links {{
\t\tiifname "lo" return
\t\tiifname != "{MESH_INTERFACES}" drop
\t}}

\t# A member sends only what the mesh addresses: a packet from 1.2.3.4
\t# over a link would otherwise leave by the underlay (spoofing, reflection).
\t# The overlay devices carry whatever their users put on them.
\tchain mesh_sources_only {{
\t\tiifname {{ {overlay} }} return
\t\tip saddr != @mesh4 drop
\t\tip6 saddr != @mesh6 ip6 saddr != fe80::/10 drop
\t}}

\tchain mesh_destinations_only {{
\t\toifname {{ {overlay} }} return
\t\tip daddr != @mesh4 drop
\t\tip6 daddr != @mesh6 drop
\t}}

\tchain between_mesh_links {{
\t\tiifname != "{MESH_INTERFACES}" drop
\t\toifname != "{MESH_INTERFACES}" drop
\t}}
}}
"""


def removal() -> str:
    """The nft script that deletes the table, present or not."""
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n"


def _nft(script: str, what: str) -> None:
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        raise WgmeshError(f"cannot {what}: nft is not installed (apt install nftables)")
    try:
        result = run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise WgmeshError(f"cannot {what}: nft did not finish within 30 s") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        raise WgmeshError(f"cannot {what}: nft: {reason}")


def apply(plan: MeshPlan) -> None:
    _nft(render(plan), f"load the firewall (nftables table inet {TABLE})")


def remove() -> None:
    _nft(removal(), f"remove the firewall (nftables table inet {TABLE})")
