"""Shared fixtures of the unit tests: a private file tree per test, real
WireGuard keys (from `wg`, made once per session), an initialised node."""

import os
import sys
from pathlib import Path

import pytest

# unit_helpers sits beside this file; importable however pytest imports tests.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from unit_helpers import init_node, save_link_to_node_2, wg
from wgmesh_common.addressing import MeshPlan
from wgmesh_common.node import Node
from wgmesh_common.paths import Paths


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    # Never log into a real journal, and never touch the real /etc/wgmesh.
    monkeypatch.setenv("WGMESH_LOG", "stderr")
    monkeypatch.setenv("WGMESH_ROOT", str(tmp_path / "default-root"))
    for name in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"):
        monkeypatch.delenv(name, raising=False)


def _host_interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else set()


@pytest.fixture(autouse=True)
def _host_network_untouched():
    # Unit tests stop at the netlink boundary: a test that realises a link
    # here would leave a WireGuard interface (and its daemon) on this host.
    before = _host_interfaces()
    yield
    added = {name for name in _host_interfaces() - before if name.startswith("wgm")}
    assert not added, f"a unit test created host interfaces {sorted(added)}: realise links in the lab instead"


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path)


@pytest.fixture(scope="session")
def wgkeys() -> list[tuple[str, str]]:
    """Three real keypairs from wireguard-tools: [(private, public), ...]."""
    pairs = []
    for _ in range(3):
        private = wg("genkey")
        pairs.append((private, wg("pubkey", stdin=private + "\n")))
    return pairs


@pytest.fixture
def node(paths) -> Node:
    """Node 0 with an initialised config under tmp_path."""
    return init_node(paths)


@pytest.fixture
def plan() -> MeshPlan:
    return MeshPlan.default()


@pytest.fixture
def link_psk(node) -> bytes:
    """Node 0 has a link to node 2; the key node 2 signs its requests with."""
    return save_link_to_node_2(node.paths)
