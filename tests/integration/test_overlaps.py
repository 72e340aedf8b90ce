"""`wgmesh init` on a host that already has a network inside the mesh's
ranges (a VPS's private 10.0.0.0/24): it says so, in one line naming the
setting that avoids it, initialises all the same, and `wgmesh status`
repeats it."""

import pytest

from .helpers import interfaces

SETTING = "'wgmesh set mesh.subnet NETWORK mesh.vxlan_subnet NETWORK'"


def overlap_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "overlaps" in line]


@pytest.mark.ids((2, 4))
def test_init_warns_about_a_host_network_inside_the_mesh_subnet(netns_lab):
    node, clean = netns_lab[2], netns_lab[4]
    private = min(name for name in interfaces(node) if name != "lo")
    node.run(["ip", "addr", "add", "10.0.0.5/24", "dev", private])

    result = node.run(["wgmesh", "init", "2", "--no-start"])
    lines = overlap_lines(result.stderr)
    assert lines == [(f"warning: the mesh's IPv4 subnet 10.0.0.0/16 overlaps 10.0.0.0/24 (address 10.0.0.5/24 on "
                     f"{private}) already on this host: {SETTING} avoids it")], result.stderr
    assert (node.files_dir / "wgmesh.toml").exists(), "a warning, not a refusal"
    assert overlap_lines(node.run(["wgmesh", "status"]).stderr) == lines

    # A host without such a network hears nothing about it.
    assert overlap_lines(clean.run(["wgmesh", "init", "4", "--no-start"]).stderr) == []
