"""wgmesh as operators run it: the .deb installed with apt in containers
booted with systemd; links are units, come back on boot, are repaired when
their daemon dies; an upgrade keeps the mesh, a purge leaves nothing."""

import subprocess
import time

import pytest

from tests.integration.helpers import interfaces, pings, report, wait_until
from tests.system.meshcheck import MESH_TABLE

NODE0_URL = "http://198.18.0.2:8080"


def join_two(mesh, transport="4"):
    node0, node2 = mesh[0], mesh[2]
    node0.run(["wgmesh", "init", "0", "--public"])
    node2.run(["wgmesh", "init", "2"])
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    flags = [] if transport == "auto" else ["--transport", transport]
    node2.run(["wgmesh", "connect", *flags, NODE0_URL, token])
    assert wait_until(lambda: pings(node0, "10.0.2.1") and pings(node2, "10.0.0.1"), 20)
    return node0, node2


def unit_property(node, unit: str, prop: str) -> str:
    return node.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


def process_status(node, pid: str) -> dict[str, str]:
    lines = node.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def active(node, unit: str) -> bool:
    return node.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0


@pytest.mark.ids((0, 2))
def test_join_makes_one_link_unit_per_link_on_both_sides(mesh_lab):
    node0, node2 = join_two(mesh_lab, transport="4")
    assert active(node0, "wgmesh-link@wgm2.service") and active(node2, "wgmesh-link@wgm0.service")
    # The unit's main process is wireguard-go itself (no kernel module here).
    pid = unit_property(node2, "wgmesh-link@wgm0.service", "MainPID")
    assert node2.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "wireguard-go"
    # Part of wgmesh.target (stopped with it); the generator's want of it
    # comes at the next boot (test_links_come_back_after_a_reboot).
    wants = node2.run(["systemctl", "list-dependencies", "--plain", "--no-pager", "wgmesh.target"]).stdout
    assert "wgmesh-link@wgm0.service" in wants
    assert "wgmesh.target" in node2.run(["systemctl", "list-dependencies", "--plain", "--no-pager",
                                         "multi-user.target"]).stdout
    # The node unit loaded the firewall, under its own sandbox, and loads it again after
    # Debian's nftables.service flushed the whole ruleset (a restart, then a reload).
    assert "table inet wgmesh" in node2.run(["nft", "list", "tables"]).stdout
    for action in ("restart", "reload"):
        node2.run(["systemctl", action, "nftables.service"])
        assert wait_until(lambda: "table inet wgmesh" in node2.run(["nft", "list", "tables"]).stdout, 10), action
    # The join that was just served went through the unprivileged front end to the privileged helper.
    front = process_status(node0, unit_property(node0, "wgmesh-join-server.service", "MainPID"))
    helper = process_status(node0, unit_property(node0, "wgmesh-join-helper.service", "MainPID"))
    wgmesh_uid = node0.run(["id", "-u", "wgmesh"]).stdout.strip()
    assert front["Uid"].split()[0] == wgmesh_uid != "0" and int(front["CapEff"], 16) == 0, front
    assert int(front["CapBnd"], 16) == 0 and front["NoNewPrivs"] == "1", front
    assert helper["Uid"].split()[0] == "0", helper
    assert node0.run(["stat", "-c", "%U:%G %a", "/run/wgmesh/join-helper.sock"]).stdout.split() == \
        ["root:wgmesh", "660"]
    # bird of wgmesh's own beside the stock one, untouched.
    assert active(node0, "wgmesh-bird.service") and active(node0, "bird.service")
    assert "Full" in node0.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors"]).stdout
    # Link events in the journal, selectable by field.
    events = node2.run(["journalctl", "--no-pager", "-o", "cat", "WGMESH_EVENT=link-up"]).stdout
    assert "link wgm0 to node 0 is up" in events

    # The reload path under systemd (ExecReload of the link units): a new key for node 2's side,
    # taken by node 0's helper, and a new MTU; neither link unit restarts.
    daemons = (unit_property(node0, "wgmesh-link@wgm2.service", "MainPID"),
               unit_property(node2, "wgmesh-link@wgm0.service", "MainPID"))
    old_key = node2.run(["wg", "show", "wgm0", "public-key"]).stdout.strip()
    node2.run(["wgmesh", "rekey", "wgm0"])
    new_key = node2.run(["wg", "show", "wgm0", "public-key"]).stdout.strip()
    assert new_key != old_key and new_key in node0.run(["wg", "show", "wgm2", "peers"]).stdout
    assert wait_until(lambda: pings(node2, "10.0.0.1"), 15), "the new key carries no traffic"
    node2.run(["wgmesh", "set", "wireguard.mtu", "1380"])
    assert "mtu 1380" in node2.run(["ip", "link", "show", "wgm0"]).stdout
    assert pings(node2, "10.0.0.1")
    assert (unit_property(node0, "wgmesh-link@wgm2.service", "MainPID"),
            unit_property(node2, "wgmesh-link@wgm0.service", "MainPID")) == daemons


def wants_of_target(node) -> list[str]:
    """What wgmesh.target Wants= (the generator's symlinks as systemd last loaded them)."""
    return unit_property(node, "wgmesh.target", "Wants").split()


@pytest.mark.ids((0, 2))
def test_links_come_back_after_a_reboot(mesh_lab):
    node0, node2 = join_two(mesh_lab, transport="auto")
    # Made at run time, and no daemon-reload since: nothing but the link
    # files and the generator at boot can bring them back.
    assert "wgmesh-link@wgm0.service" not in wants_of_target(node2)
    node2.poweroff()
    node2.boot()
    node2.wait_running(timeout=120)
    running = time.monotonic()
    assert wait_until(lambda: pings(node0, "10.0.2.1") and pings(node2, "10.0.0.1")
                      and pings(node0, "fd10:0:0:2::1"), timeout=30, interval=0.1)
    elapsed = time.monotonic() - running
    report(f"after a reboot, 10.0.N.1 reachable both ways {elapsed:.1f} s after systemd said 'running'")
    assert elapsed <= 20
    assert active(node2, "wgmesh-link@wgm0.service") and active(node2, "wgmesh-link@wgm0v6.service")
    wants = wants_of_target(node2)
    assert "wgmesh-link@wgm0.service" in wants and "wgmesh-link@wgm0v6.service" in wants

    # A link removed at run time: its unit stops and nothing fails; the want
    # the generator made at boot stays until the next one, and starting the
    # unit through it does nothing (ConditionPathExists= on the link file).
    node2.run(["wgmesh", "disconnect", "wgm0v6"])
    assert not active(node2, "wgmesh-link@wgm0v6.service") and "wgm0v6" not in interfaces(node2)
    node2.run(["systemctl", "start", "wgmesh.target", "wgmesh-link@wgm0v6.service"])
    assert unit_property(node2, "wgmesh-link@wgm0v6.service", "ConditionResult") == "no"
    assert "wgm0v6" not in interfaces(node2) and active(node2, "wgmesh-link@wgm0.service")
    assert node2.run(["systemctl", "--failed", "--plain", "--no-legend"]).stdout.strip() == ""
    node2.poweroff()
    node2.boot()
    node2.wait_running(timeout=120)
    assert "wgmesh-link@wgm0v6.service" not in wants_of_target(node2)
    assert wait_until(lambda: active(node2, "wgmesh-link@wgm0.service"), 20)


@pytest.mark.ids((0, 2))
def test_stop_and_start_exactly_one_link_and_repair_a_killed_daemon(mesh_lab):
    node0, node2 = join_two(mesh_lab, transport="auto")
    assert wait_until(lambda: {"wgm0", "wgm0v6"} <= interfaces(node2), 10)
    node2.run(["systemctl", "stop", "wgmesh-link@wgm0.service"])
    assert "wgm0" not in interfaces(node2) and "wgm0v6" in interfaces(node2)
    assert (node2.files_dir / "links" / "wgm0.toml").exists()  # the link itself stays
    # Traffic moves to the other link.
    assert wait_until(lambda: pings(node0, "10.0.2.1"), 15)
    node2.run(["systemctl", "start", "wgmesh-link@wgm0.service"])
    assert "wgm0" in interfaces(node2)
    assert wait_until(lambda: "dev wgm0 " in node2.run(["ip", "route", "get", "10.0.0.1"]).stdout
                      or "wgm0" in node2.run(["ip", "route", "show", "table", MESH_TABLE, "10.0.0.1"]).stdout, 15)

    pid = unit_property(node2, "wgmesh-link@wgm0.service", "MainPID")
    node2.run(["kill", "-9", pid])
    assert wait_until(lambda: unit_property(node2, "wgmesh-link@wgm0.service", "MainPID") not in ("0", pid)
                      and active(node2, "wgmesh-link@wgm0.service"), 15)
    assert int(unit_property(node2, "wgmesh-link@wgm0.service", "NRestarts")) >= 1
    assert wait_until(lambda: node2.run(["ping", "-c1", "-W1", "-I", "wgm0", "10.0.0.4"], check=False).returncode == 0, 15)


@pytest.mark.ids((0, 2))
def test_an_upgrade_keeps_the_link(mesh_lab, upgrade_deb):
    node0, node2 = join_two(mesh_lab, transport="4")
    # Both nodes as schema 2 left them, with the link roles' old words: the
    # upgrade's daemon-reload reads them before its `wgmesh migrate` does.
    for node, name, old_role in ((node0, "wgm2", "server"), (node2, "wgm0", "client")):
        node.run(["sed", "-i", f's/^role = .*/role = "{old_role}"/', f"/etc/wgmesh/links/{name}.toml"])
        node.run(["sh", "-c", "echo 2 > /var/lib/wgmesh/schema"])
    before = unit_property(node2, "wgmesh-link@wgm0.service", "MainPID")
    # Ping through the whole upgrade: not one lost packet is asked, but the link must never go away.
    pinger = node0.popen(["ping", "-q", "-i", "0.2", "-w", "25", "10.0.2.1"], stdout=subprocess.PIPE, text=True)
    mesh_lab.install(node2, upgrade_deb)
    mesh_lab.install(node0, upgrade_deb)
    assert "+upgrade1" in node2.run(["dpkg-query", "-W", "-f=${Version}", "wgmesh"]).stdout
    assert unit_property(node2, "wgmesh-link@wgm0.service", "MainPID") == before
    assert active(node2, "wgmesh-join-server.socket") and active(node2, "wgmesh-bird.service")
    assert pings(node0, "10.0.2.1") and pings(node2, "10.0.0.1")
    assert "Full" in node2.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors"]).stdout
    for node, name, new_role in ((node0, "wgm2", "listener"), (node2, "wgm0", "dialer")):
        assert f'role = "{new_role}"' in node.run(["cat", f"/etc/wgmesh/links/{name}.toml"]).stdout
        assert node.run(["cat", "/var/lib/wgmesh/schema"]).stdout.strip() == "3"
    assert active(node0, "wgmesh-link@wgm2.service") and active(node2, "wgmesh-link@wgm0.service")
    out, _ = pinger.communicate(timeout=60)
    summary = next(line for line in out.splitlines() if "packets transmitted" in line)
    report(f"ping every 0.2 s across the upgrade of both nodes: {summary}")
    received = int(summary.split(",")[1].split()[0])
    assert received > 0.9 * int(summary.split()[0])


@pytest.mark.ids((0, 2))
def test_remove_and_purge_leave_nothing(mesh_lab):
    _node0, node2 = join_two(mesh_lab, transport="auto")
    node2.run(["apt-get", "remove", "-y", "-q", "wgmesh"], timeout=300)
    assert not {i for i in interfaces(node2) if i.startswith("wgm")}
    processes = node2.run(["ps", "-eo", "args"]).stdout
    assert "wireguard-go" not in processes and "/run/wgmesh/bird" not in processes
    assert "wgmesh-join-server" not in processes and "wgmesh-vxlan-sync" not in processes
    assert "proto bird" not in node2.run(["ip", "route", "show", "table", "all"]).stdout
    assert MESH_TABLE not in node2.run(["ip", "rule"]).stdout + node2.run(["ip", "-6", "rule"]).stdout
    assert "10.0.2.1" not in node2.run(["ip", "addr", "show", "lo"]).stdout
    assert "wgmesh" not in node2.run(["nft", "list", "tables"]).stdout
    units = node2.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "wgmesh*"]).stdout
    assert units.strip() == "", units
    # remove keeps the configuration and the keys ...
    assert (node2.files_dir / "links" / "wgm0.key").exists()
    node2.run(["apt-get", "purge", "-y", "-q", "wgmesh"], timeout=300)
    # ... purge does not.
    assert not node2.host_path("/etc/wgmesh").exists() and not node2.host_path("/var/lib/wgmesh").exists()
    assert not node2.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "wgmesh*"]).stdout.strip()
