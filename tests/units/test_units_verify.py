"""Every unit file passes `systemd-analyze verify` without a single warning,
against a root holding systemd's own units, the units and the programs."""

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).parents[2]
UNITS = sorted(p for p in (PROJECT / "units").iterdir() if p.is_file())
SYSTEM_UNITS = Path("/lib/systemd/system")


def instance_name(unit: Path) -> str:
    return unit.name.replace("@.", "@example.")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    if not shutil.which("systemd-analyze") or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd is not installed")
    root = tmp_path_factory.mktemp("root")
    unit_dir = root / "usr/lib/systemd/system"
    shutil.copytree(SYSTEM_UNITS, unit_dir, symlinks=True)
    for unit in UNITS:
        shutil.copy(unit, unit_dir)
    for directory, programs in (("usr/bin", [p.name for p in (PROJECT / "bin").iterdir()]),
                                ("usr/sbin", ["bird", "birdc"])):
        (root / directory).mkdir(parents=True, exist_ok=True)
        for program in programs:
            # verify only checks that the programs exist and are executable.
            target = root / directory / program
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
    (root / "etc").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_cleanly(root: Path, unit: Path) -> None:
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", instance_name(unit)],
                            cwd=root / "usr/lib/systemd/system", env=env, capture_output=True, text=True)
    complaints = [l for l in (result.stdout + result.stderr).splitlines() if "wgmesh" in l]
    assert result.returncode == 0 and not complaints, "\n".join(complaints) or result.stderr


def parse(unit: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(unit)
    return parser


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix != ".target"], ids=lambda u: u.name)
def test_every_part_stops_with_the_target(unit: Path) -> None:
    parsed = parse(unit)
    if unit.name in ("wgmesh-prober.service", "wgmesh-cost-writer.service", "wgmesh-mesh.service"):
        # Started by their timer/path unit, which is itself PartOf the target.
        return
    assert "wgmesh.target" in parsed["Unit"].get("PartOf", ""), unit.name


def test_link_template_owns_its_daemon_and_may_open_tun() -> None:
    service = parse(PROJECT / "units" / "wgmesh-link@.service")["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "all"
    assert service["RemainAfterExit"] == "yes"
    assert service["Restart"] == "on-failure"
    assert "/dev/net/tun rw" in service["DeviceAllow"]
    assert "CAP_NET_ADMIN" in service["CapabilityBoundingSet"]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"


@pytest.mark.parametrize("path_unit", [u for u in UNITS if u.suffix == ".path"], ids=lambda u: u.name)
def test_what_a_path_unit_starts_is_not_start_limited(path_unit: Path) -> None:
    # A burst of link files (a node joining a mesh) would hit the default
    # start limit: the run carrying the last link into bird fails, and the
    # path unit fails with it and watches nothing more.
    service = PROJECT / "units" / parse(path_unit)["Path"]["Unit"]
    assert parse(service)["Unit"].get("StartLimitIntervalSec") == "0", service.name
