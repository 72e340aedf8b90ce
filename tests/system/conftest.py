"""System tests: containers booted with systemd, the built .deb installed
with apt, and wgmesh driven the way an operator drives it."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.system.debbuild import build_deb


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/system/" in str(item.fspath):
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    """The package under test: WGMESH_DEB, or built from this tree once."""
    given = os.environ.get("WGMESH_DEB")
    if given:
        assert Path(given).is_file(), f"WGMESH_DEB={given} does not exist"
        return Path(given)
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def upgrade_deb(tmp_path_factory) -> Path:
    """A newer build of the same tree, to upgrade to."""
    return build_deb(tmp_path_factory.mktemp("deb-upgrade"), "+upgrade1")


@pytest.fixture(scope="session", autouse=True)
def as_root():
    if os.geteuid() != 0:
        pytest.skip("system tests need root (containers)")


class Mesh:
    """A container lab with wgmesh installed on every node."""

    def __init__(self, lab, deb: Path):
        self.lab = lab
        self.deb = deb

    def __getitem__(self, mesh_id):
        return self.lab[mesh_id]

    def install(self, node, deb: Path | None = None) -> None:
        deb = deb or self.deb
        target = self.lab.share_dir / deb.name
        if not target.exists():
            target.write_bytes(deb.read_bytes())
        try:
            node.run(["apt-get", "install", "-y", "-q", f"/lab/{deb.name}"], timeout=300)
        except subprocess.CalledProcessError as error:
            raise AssertionError(f"installing {deb.name} on node {node.mesh_id} failed:\n"
                                 f"{error.stdout[-2000:]}\n{error.stderr[-2000:]}") from None


def start_mesh_lab(ids, deb: Path, name_prefix: str = "sy", read_only_proc_sys=()):
    from tests.lab.lab import Lab

    lab = Lab(f"{name_prefix}{uuid.uuid4().hex[:4]}", kind="container", ids=ids,
              read_only_proc_sys=read_only_proc_sys)
    lab.start()
    mesh = Mesh(lab, deb)
    try:
        for node in lab.nodes.values():
            mesh.install(node)
    except BaseException:
        lab.close(raise_on_problems=False)
        raise
    return mesh


@pytest.fixture
def mesh_lab(request, deb):
    marker = request.node.get_closest_marker("ids")
    ids = marker.args[0] if marker else (0, 2)
    mesh = start_mesh_lab(ids, deb)
    try:
        yield mesh
    finally:
        mesh.lab.close(raise_on_problems=sys.exc_info()[0] is None)
