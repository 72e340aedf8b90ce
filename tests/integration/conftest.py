"""Integration tests: real wireguard-go, real bird2, the real join-server,
in network namespaces (each node with its own /etc/wgmesh, /var/lib/wgmesh
and /run), with the wgmesh commands installed in the test venv."""

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

VENV_BIN = str(Path(sys.executable).parent)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def commands_on_path():
    """The nodes run `wgmesh` as an operator would: found on PATH."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (network namespaces)")
    for tool in ("wireguard-go", "bird", "ip", "nsenter"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            pytest.skip(f"{tool} is not installed (run tests/run)")
    os.environ["PATH"] = f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"


def lab_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:4]}"


@pytest.fixture
def netns_lab(request):
    """A lab of netns nodes; the test says which IDs with @pytest.mark.ids."""
    from tests.lab.lab import Lab

    marker = request.node.get_closest_marker("ids")
    ids = marker.args[0] if marker else (0, 2)
    with Lab(lab_name("it"), kind="netns", ids=ids) as lab:
        yield lab
