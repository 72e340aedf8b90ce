"""Smoke tests of the lab itself: the nodes are wired, isolated where they
should be, and every teardown path leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.containers import ContainerError
from tests.lab.host import PREFIX, ProcessRef, all_pids, netns_list
from tests.lab.lab import Lab
from tests.lab.resources import state_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
needs_nspawn = pytest.mark.skipif(
    not (shutil.which("systemd-nspawn") and shutil.which("debootstrap")),
    reason="needs systemd-container and debootstrap",
)


def unique(name: str) -> str:
    # Two runs at once (or a rerun after a crash) must not share a lab name.
    return f"{name}{os.getpid() % 100000}"


# -- leftovers ---------------------------------------------------------------


def lab_namespaces(lab_name: str) -> list[str]:
    return [name for name in netns_list() if name.startswith(f"{PREFIX}{lab_name}-")]


def processes_mounting(path: Path) -> list[int]:
    """Every process whose mount namespace has a mount from under `path`:
    the private namespaces of netns nodes are invisible from ours."""
    needle = str(path)
    found = []
    for pid in all_pids():
        try:
            if needle in Path(f"/proc/{pid}/mountinfo").read_text():
                found.append(pid)
        except OSError:  # gone, or a zombie (EINVAL)
            pass
    return found


def nspawn_processes_of(lab_name: str) -> list[int]:
    marker = f"--machine={PREFIX}{lab_name}-".encode()
    found = []
    for pid in all_pids():
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def resources_of(lab: Lab) -> dict:
    return {
        "name": lab.name,
        "workdir": lab.workdir,
        "processes": [ProcessRef.from_json(entry) for entry in lab.record.data["processes"]],
        "cgroups": list(lab.record.data["cgroups"]),
    }


def assert_nothing_left(resources: dict) -> None:
    name = resources["name"]
    assert lab_namespaces(name) == []
    assert [ref.pid for ref in resources["processes"] if ref.alive()] == []
    assert nspawn_processes_of(name) == []
    assert processes_mounting(resources["workdir"]) == []
    assert not resources["workdir"].exists()
    assert [cgroup for cgroup in resources["cgroups"] if os.path.exists(cgroup)] == []
    assert not state_file(name).exists()


def run_lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


# -- netns nodes ---------------------------------------------------------------


@pytest.mark.integration
@needs_root
def test_netns_nodes_reach_each_other_over_v4_and_v6():
    with Lab(unique("ping"), kind="netns", ids=[0, 2]) as lab:
        first, second = lab.node(0), lab.node(2)
        assert first.addresses.v4 == "198.18.0.2" and second.addresses.v6 == "2001:db8:2::2"
        for source, target in ((first, second), (second, first)):
            source.run(["ping", "-c1", "-W2", target.addresses.v4])
            source.run(["ping", "-6", "-c1", "-W2", target.addresses.v6])
        assert first.wan_interface == "n0"
        assert "n2" in lab.underlay.run(["ip", "-br", "link"]).stdout


def ping_rtts(node, address: str, count: int, interval: float = 0.05) -> list[float]:
    out = node.run(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", address], check=False).stdout
    return [float(part.split("=")[1]) for part in out.split() if part.startswith("time=")]


@pytest.mark.integration
@needs_root
def test_impairments_delay_and_drop_one_pair_only_and_change_at_run_time():
    with Lab(unique("netem"), kind="netns", ids=[0, 2, 4]) as lab:
        first, second, third = lab.node(0), lab.node(2), lab.node(4)
        lab.impair(0, 2, delay=40)
        # 40 ms each way: every round trip takes at least 80 ms, over both families.
        assert min(ping_rtts(first, second.addresses.v4, 5)) >= 80
        assert min(ping_rtts(second, first.addresses.v6, 5)) >= 80
        # Another pair is not held: its fastest round trip is under the 80 ms
        # the held pair can never beat.
        assert min(ping_rtts(first, third.addresses.v4, 5)) < 80
        lab.impair(0, 2, delay=0, loss=1.0)
        assert ping_rtts(first, second.addresses.v4, 5) == []
        lab.impair(0, 2)  # clean again: every packet answers, and sooner than with the delay
        rtts = ping_rtts(first, second.addresses.v4, 5)
        assert len(rtts) == 5 and min(rtts) < 80
    assert lab_namespaces(lab.name) == []


@pytest.mark.integration
@needs_root
def test_netns_nodes_have_their_own_etc_wgmesh_and_run():
    with Lab(unique("priv"), kind="netns", ids=[0, 2]) as lab:
        for node in lab.nodes.values():
            node.run(["ip", "tuntap", "add", "dev", "wgtest", "mode", "tun"])
            node.run(f"echo {node.name} > /etc/wgmesh/whoami && echo {node.name} > /run/whoami")
        for node in lab.nodes.values():
            assert node.run(["cat", "/etc/wgmesh/whoami"]).stdout.strip() == node.name
            assert (node.files_dir / "whoami").read_text().strip() == node.name
            assert node.run(["cat", "/run/whoami"]).stdout.strip() == node.name
            assert node.run(["ip", "-br", "link", "show", "wgtest"]).returncode == 0
        assert not Path("/run/whoami").exists()
        assert not Path("/etc/wgmesh/whoami").exists()


@pytest.mark.integration
@needs_root
@pytest.mark.skipif(not shutil.which("wireguard-go"), reason="needs wireguard-go")
def test_wireguard_go_uapi_sockets_are_per_node():
    with Lab(unique("wgo"), kind="netns", ids=[0, 2]) as lab:
        for node in lab.nodes.values():
            # Left running on purpose: the teardown must kill it.
            node.popen(["wireguard-go", "-f", "wg0"], env={"WG_PROCESS_FOREGROUND": "1"}, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for node in lab.nodes.values():
            while not node.host_path("/run/wireguard/wg0.sock").exists():
                assert time.monotonic() < deadline, f"no UAPI socket in {node.name}"
                time.sleep(0.05)
            assert "listening port" in node.run(["wg", "show", "wg0"]).stdout


@pytest.mark.integration
@needs_root
def test_netns_teardown_leaves_nothing():
    mountpoints_before = {path: os.path.exists(path) for path in ("/etc/wgmesh", "/var/lib/wgmesh")}
    with Lab(unique("gone"), kind="netns", ids=[0, 2, 4]) as lab:
        lab.node(0).popen(["sleep", "600"])
        resources = resources_of(lab)
        assert len(lab_namespaces(lab.name)) == 4
        assert processes_mounting(lab.workdir)
    assert_nothing_left(resources)
    if not any(Path(state).exists() for state in Path("/run/wgmesh-lab").glob("*.json")):
        assert {path: os.path.exists(path) for path in mountpoints_before} == mountpoints_before


@pytest.mark.integration
@needs_root
def test_setup_failure_tears_down_what_was_made():
    # 256 does not fit the underlay plan: the third node fails mid-setup.
    lab = Lab(unique("fail"), kind="netns", ids=[0, 2, 256])
    with pytest.raises(ValueError):
        lab.start()
    assert lab_namespaces(lab.name) == []
    assert not lab.workdir.exists()
    assert not state_file(lab.name).exists()


HOLD_A_LAB = """
import sys, time
from tests.lab.lab import Lab
with Lab(sys.argv[1], kind=sys.argv[2], ids=[0, 2]) as lab:
    print(lab.workdir, flush=True)
    time.sleep(600)
"""


def start_lab_holder(name: str, kind: str) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_LAB, name, kind],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        # A background shell may have left SIGINT ignored for us.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - only resets one signal
    )
    line = process.stdout.readline().strip()
    assert line, f"lab holder died: {process.wait()}"
    return process, Path(line)


@pytest.mark.integration
@needs_root
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_creator_tears_down(signum):
    name = unique(f"sig{int(signum)}")
    process, workdir = start_lab_holder(name, "netns")
    assert lab_namespaces(name)
    process.send_signal(signum)
    process.wait(timeout=60)
    assert lab_namespaces(name) == []
    assert not workdir.exists()
    assert not state_file(name).exists()


@pytest.mark.integration
@needs_root
def test_down_cleans_up_after_a_killed_creator():
    name = unique("orph")
    process, workdir = start_lab_holder(name, "netns")
    process.kill()
    process.wait()
    assert lab_namespaces(name)
    listing = run_lab_cli("list")
    assert name in listing.stdout and "ORPHANED" in listing.stdout
    result = run_lab_cli("down", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab_namespaces(name) == []
    assert processes_mounting(workdir) == []
    assert not workdir.exists()
    assert not state_file(name).exists()


# -- containers ------------------------------------------------------------------


@pytest.mark.system
@needs_root
@needs_nspawn
def test_containers_boot_ping_and_keep_their_files_across_a_reboot():
    with Lab(unique("boot"), kind="container", ids=[0, 2]) as lab:
        first, second = lab.node(0), lab.node(2)
        for container in (first, second):
            assert container.system_state() == "running"
            assert container.run(["hostname"]).stdout.strip() == container.name
            assert container.run(["systemctl", "is-active", "bird"]).stdout.strip() == "active"
        first.run(["ping", "-c1", "-W2", second.addresses.v4])
        second.run(["ping", "-6", "-c1", "-W2", first.addresses.v6])
        # The product enables forwarding: /proc/sys/net must be writable.
        first.run("echo 1 > /proc/sys/net/ipv4/ip_forward")
        (lab.share_dir / "shared.txt").write_text("from the host\n")
        assert first.run(["cat", "/lab/shared.txt"]).stdout == "from the host\n"
        assert first.run(["touch", "/lab/nope"], check=False).returncode != 0

        first.run("echo before-poweroff > /root/marker")
        assert first.poweroff() == 0
        assert not first.is_up()
        assert (first.merged / "root/marker").read_text() == "before-poweroff\n"
        first.boot()
        assert first.wait_running(120) < 120
        assert first.run(["cat", "/root/marker"]).stdout == "before-poweroff\n"
        assert first.run(["journalctl", "--list-boots", "--no-pager"]).stdout.count("\n") >= 3
        second.run(["ping", "-c1", "-W2", first.addresses.v4])
        assert "BIRD" in first.journal("bird.service")


@pytest.mark.system
@needs_root
@needs_nspawn
def test_container_teardown_leaves_nothing():
    with Lab(unique("ctgone"), kind="container", ids=[0, 2]) as lab:
        resources = resources_of(lab)
        assert len(nspawn_processes_of(lab.name)) == 2
        assert len(processes_mounting(lab.workdir)) >= 2
        lab.node(2).run(["systemd-run", "--unit=lingering", "sleep", "600"])
    assert_nothing_left(resources)


@pytest.mark.system
@needs_root
@needs_nspawn
def test_degraded_boot_reports_the_failed_units():
    with Lab(unique("degr"), kind="container", ids=[0], boot=False) as lab:
        container = lab.node(0)
        units = container.merged / "etc/systemd/system"
        (units / "lab-broken.service").write_text(
            "[Unit]\nDescription=fails on purpose\n[Service]\nType=oneshot\nExecStart=/bin/false\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        (units / "multi-user.target.wants").mkdir(exist_ok=True)
        (units / "multi-user.target.wants/lab-broken.service").symlink_to("/etc/systemd/system/lab-broken.service")
        container.boot()
        with pytest.raises(ContainerError, match="lab-broken.service"):
            container.wait_running(60)


@pytest.mark.system
@needs_root
@needs_nspawn
def test_a_deb_needing_wgmesh_dependencies_installs_offline():
    with Lab(unique("apt"), kind="container", ids=[0]) as lab:
        package = lab.share_dir / "probe"
        (package / "DEBIAN").mkdir(parents=True)
        (package / "DEBIAN/control").write_text(
            "Package: wgmesh-lab-probe\nVersion: 1.0\nArchitecture: all\n"
            "Maintainer: lab <lab@example.invalid>\n"
            "Depends: python3 (>= 3.11), python3-pyroute2, python3-icmplib, python3-tomli-w,"
            " python3-systemd, python3-click, bird2, wireguard-tools\n"
            "Recommends: wireguard-go\nDescription: stands in for wgmesh's dependencies\n"
        )
        subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(package), str(lab.share_dir / "probe.deb")],
                       check=True, capture_output=True)  # fmt: skip
        container = lab.node(0)
        # The container's netns reaches nothing but the lab WAN: apt must
        # find everything installed already.
        container.run(["apt-get", "install", "-y", "/lab/probe.deb"], timeout=120)
        assert "ii" in container.run(["dpkg", "-l", "wgmesh-lab-probe"]).stdout
