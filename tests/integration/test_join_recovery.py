"""A `wgmesh connect` killed with SIGKILL (a power cut, an OOM kill) at
fixed points of a join, then run again: the plain retry makes both families
at once and leaves exactly one link per family on each side, with matching
keys and no reservation."""

import time
import tomllib

import pytest

from wgmesh_common import linkfile
from wgmesh_common.join import kill_point_environment

from .helpers import init_two_nodes, interfaces, report, wait_until

NODE0_URL = "http://198.18.0.2:8080"
# In the order a join passes them (join._connect_family and join._install).
KILL_POINTS = ["reserved", "answered", "written", "started"]
KILLED = (-9, 128 + 9)  # the process itself, or nsenter reporting its child's signal


def link_files(node) -> dict[str, str]:
    """name -> its TOML text, for the node's link files."""
    return {path.stem: path.read_text() for path in sorted((node.files_dir / "links").glob("*.toml"))}


def keys_of(node, name: str) -> tuple[str, str]:
    """(this half's public key, the peer's public key it expects)."""
    path = node.files_dir / "links" / f"{name}.toml"
    link = linkfile.parse(tomllib.loads(path.read_text()), str(path))
    return link.public_key, link.peer_public_key


def reservations(node) -> list[str]:
    directory = node.state_dir / "reservations"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def assert_one_link_per_family(node0, node2) -> None:
    assert set(link_files(node0)) == {"wgm2", "wgm2v6"}
    assert set(link_files(node2)) == {"wgm0", "wgm0v6"}
    for here, there in (("wgm0", "wgm2"), ("wgm0v6", "wgm2v6")):
        public2, peer_of2 = keys_of(node2, here)
        public0, peer_of0 = keys_of(node0, there)
        assert (peer_of2, peer_of0) == (public0, public2), f"{here}/{there}: the halves' keys do not match"
    assert wait_until(lambda: {"wgm0", "wgm0v6"} <= interfaces(node2), 10)
    assert wait_until(lambda: {"wgm2", "wgm2v6"} <= interfaces(node0), 10)
    assert reservations(node0) == [] and reservations(node2) == []


@pytest.mark.ids((0, 2))
def test_a_connect_killed_at_any_point_is_made_whole_by_the_next(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    for point in KILL_POINTS:
        killed = node2.run(["wgmesh", "connect", NODE0_URL, token], env=kill_point_environment(point), check=False)
        assert killed.returncode in KILLED, f"{point}: {killed.returncode} {killed.stderr}"
        left = (sorted(link_files(node2)), reservations(node2), sorted(link_files(node0)))
        report(f"connect killed at '{point}': node 2 links {left[0]}, reservations {left[1]}; node 0 links {left[2]}")

        again = node2.run(["wgmesh", "connect", NODE0_URL, token], check=False)
        assert again.returncode == 0, f"after a kill at {point}: {again.stderr}"
        assert "over IPv4" in again.stdout and "over IPv6" in again.stdout or point == "started", again.stdout
        assert_one_link_per_family(node0, node2)
        # A third connect finds every link made and running.
        third = node2.run(["wgmesh", "connect", NODE0_URL, token], check=False)
        assert third.returncode == 0 and "already has every link to node 0" in third.stdout, third.stderr

        node2.run(["wgmesh", "disconnect", "--yes"])
        assert wait_until(lambda: not link_files(node0) and not link_files(node2), 10)


@pytest.mark.ids((0, 2))
def test_the_serving_half_of_a_join_killed_after_the_answer_goes_with_the_next_pass(netns_lab):
    # Node 2 was killed once node 0 had made its half: node 2 has none, and
    # no route over which node 0 could tell it. Node 0's device has run
    # since the link was made without a handshake, so its half goes alone.
    node0, node2, token = init_two_nodes(netns_lab)
    node0.run(["wgmesh", "set", "join.abandon_after", "1"])
    killed = node2.run(["wgmesh", "connect", NODE0_URL, token], env=kill_point_environment("answered"), check=False)
    assert killed.returncode in KILLED, killed.stderr
    halves = sorted(link_files(node0))
    assert halves and not link_files(node2)
    assert wait_until(lambda: set(halves) <= interfaces(node0), 10)
    time.sleep(1.5)  # past the bound (whole seconds)
    node0.run(["wgmesh", "mesh"], check=False)
    assert link_files(node0) == {}, "node 0 kept the half of a link that never had a handshake"
    again = node2.run(["wgmesh", "connect", NODE0_URL, token], check=False)
    assert again.returncode == 0, again.stderr
    assert_one_link_per_family(node0, node2)
