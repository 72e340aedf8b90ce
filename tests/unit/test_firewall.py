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
		udp dport 4789 jump vxlan
		ip saddr @mesh4 jump from_mesh_links
		ip daddr @mesh4 jump from_mesh_links
		ip6 saddr @mesh6 jump from_mesh_links
		ip6 daddr @mesh6 jump from_mesh_links
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
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
    assert listed.count("chain ") == 5 and listed.count("jump from_mesh_links") == 4
    assert 'iifname != "wgm*" drop' in listed and 'oifname != "wgm*" drop' in listed


@needs_root_nft
def test_a_rendered_table_for_the_default_mesh_loads(tmp_path, plan):
    (tmp_path / "load.nft").write_text(firewall.render(plan))
    result = in_own_netns(f"nft -f {tmp_path}/load.nft && nft list set inet wgmesh loopbacks6")
    assert result.returncode == 0, result.stderr
    assert "fd10:0:0:c8::1" in result.stdout  # node 200, a client
