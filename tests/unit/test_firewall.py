"""The node's nftables table: rendered as golden text from a small mesh
layout, and loaded, re-loaded and removed by a real nft in a network
namespace of its own."""

import ipaddress
import os
import shutil
import subprocess

import pytest

from wgmesh_common import firewall
from wgmesh_common.addressing import MeshPlan

NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
needs_root_nft = pytest.mark.skipif(NFT is None or os.geteuid() != 0 or not shutil.which("unshare"),
                                    reason="needs nft, root and unshare (tests/run has all three)")

# Three nodes (IDs 0-2; 10.9.3.0/24 is the overlay's).
SMALL = MeshPlan(ipaddress.IPv4Network("10.9.0.0/22"), 24, ipaddress.IPv6Network("fd09::/48"),
                 ipaddress.IPv4Network("10.9.3.0/24"))

GOLDEN = """\
# Rendered by wgmesh (firewall.py); loaded by `wgmesh-link loopback up`.
# The first two lines make sure the table exists so that deleting it cannot
# fail: the whole file is one transaction, which replaces the table at once.
table inet wgmesh
delete table inet wgmesh
table inet wgmesh {
	set mesh4 { type ipv4_addr; flags interval; elements = { 10.9.0.0/22 }; }
	set mesh6 { type ipv6_addr; flags interval; elements = { fd09::/48 }; }
	set loopbacks4 { type ipv4_addr; elements = { 10.9.0.1, 10.9.1.1, 10.9.2.1 }; }
	set loopbacks6 { type ipv6_addr; elements = { fd09::1, fd09:0:0:1::1, fd09:0:0:2::1 }; }

	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wgm*" jump mesh_sources_only
		udp dport 4789 jump vxlan
		ip saddr @mesh4 jump from_mesh_links
		ip daddr @mesh4 jump from_mesh_links
		ip6 saddr @mesh6 jump from_mesh_links
		ip6 daddr @mesh6 jump from_mesh_links
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wgm*" jump mesh_sources_only
		oifname "wgm*" jump mesh_destinations_only
		ip saddr @mesh4 jump between_mesh_links
		ip daddr @mesh4 jump between_mesh_links
		ip6 saddr @mesh6 jump between_mesh_links
		ip6 daddr @mesh6 jump between_mesh_links
	}

	# The overlay tunnels between node loopbacks, over the links.
	chain vxlan {
		iifname != "wgm*" drop
		ip saddr != @loopbacks4 drop
		ip6 saddr != @loopbacks6 drop
	}

	chain from_mesh_links {
		iifname "lo" return
		iifname != "wgm*" drop
	}

	# A member sends only what the mesh addresses: a packet from 1.2.3.4
	# over a link would otherwise leave by the underlay (spoofing, reflection).
	# The overlay devices carry whatever their users put on them.
	chain mesh_sources_only {
		iifname { "wgmvx4", "wgmvx6" } return
		ip saddr != @mesh4 drop
		ip6 saddr != @mesh6 ip6 saddr != fe80::/10 drop
	}

	chain mesh_destinations_only {
		oifname { "wgmvx4", "wgmvx6" } return
		ip daddr != @mesh4 drop
		ip6 daddr != @mesh6 drop
	}

	chain between_mesh_links {
		iifname != "wgm*" drop
		oifname != "wgm*" drop
	}
}
"""


def test_render_is_the_golden_text():
    assert firewall.render(SMALL) == GOLDEN


def test_render_of_the_default_mesh(plan):
    text = firewall.render(plan)
    assert "elements = { 10.0.0.0/16 }" in text and "elements = { fd10::/48 }" in text
    loopbacks4 = next(line for line in text.splitlines() if "set loopbacks4" in line)
    assert loopbacks4.count(", ") + 1 == len(plan.valid_node_ids())
    assert "10.0.200.1" in loopbacks4 and "10.0.250.1" not in loopbacks4  # clients yes; the overlay's block no
    assert "udp dport 4789 jump vxlan" in text


def in_own_netns(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--net", "sh", "-ec", script], capture_output=True, text=True, timeout=60)


@needs_root_nft
def test_loading_is_idempotent_and_removal_is_clean(tmp_path):
    (tmp_path / "load.nft").write_text(firewall.render(SMALL))
    (tmp_path / "remove.nft").write_text(firewall.removal())
    result = in_own_netns(f"""
        cd {tmp_path}
        nft -f remove.nft            # removing what is not there is no error
        nft -f load.nft
        nft -f load.nft              # loading again replaces, never duplicates
        nft list tables
        nft list table inet wgmesh > listed
        nft -f remove.nft
        nft -f remove.nft
        echo after:; nft list tables
    """)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("after:")
    assert before.split() == ["table", "inet", "wgmesh"] and after.strip() == ""
    listed = (tmp_path / "listed").read_text()
    assert listed.count("chain ") == 7 and listed.count("jump from_mesh_links") == 4
    assert 'iifname != "wgm*" drop' in listed and 'oifname != "wgm*" drop' in listed


@needs_root_nft
def test_a_rendered_table_for_the_default_mesh_loads(tmp_path, plan):
    (tmp_path / "load.nft").write_text(firewall.render(plan))
    result = in_own_netns(f"nft -f {tmp_path}/load.nft && nft list set inet wgmesh loopbacks6")
    assert result.returncode == 0, result.stderr
    assert "fd10:0:0:c8::1" in result.stdout  # node 200, a client


@needs_root_nft
def test_a_member_cannot_send_from_addresses_outside_the_mesh(tmp_path):
    """A member (its own netns, behind a veth that the node sees as a mesh
    link, wgm9) pings the node from its mesh address and from 1.2.3.4:
    only the first gets in once the table is loaded."""
    (tmp_path / "load.nft").write_text(firewall.render(SMALL))
    name = f"wgfw{os.getpid()}"
    member, node = f"{name}m", f"{name}n"
    script = f"""
        ip netns add {member}; ip netns add {node}
        ip link add m0 netns {member} type veth peer name wgm9 netns {node}
        ip -n {member} addr add 10.9.0.6/31 dev m0; ip -n {member} link set m0 up
        ip -n {member} addr add 1.2.3.4/32 dev lo; ip -n {member} link set lo up
        ip -n {node} addr add 10.9.0.7/31 dev wgm9; ip -n {node} link set wgm9 up
        ip -n {node} route add 1.2.3.4/32 via 10.9.0.6
        ping() {{ ip netns exec {member} ping -c1 -W1 "$@" 10.9.0.7 >/dev/null 2>&1 && echo yes || echo no; }}
        echo "open: $(ping -I 10.9.0.6) $(ping -I 1.2.3.4)"
        ip netns exec {node} nft -f {tmp_path}/load.nft
        echo "filtered: $(ping -I 10.9.0.6) $(ping -I 1.2.3.4)"
    """
    try:
        result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=60)
    finally:
        for namespace in (member, node):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "open: yes yes" in result.stdout  # the lab is sound: without the table both get in
    assert "filtered: yes no" in result.stdout, result.stdout
