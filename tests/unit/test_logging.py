"""Logging, --verbose and the service manager's notifications: the journal
fields an event carries (what the notifier and `journalctl WGMESH_EVENT=`
select on), the stderr line where there is no journal, debug lines for
every external command, and sd_notify datagrams on a NOTIFY_SOCKET."""

import logging
import os
import socket
import subprocess
import sys

import pytest

from unit_helpers import VENV_BIN, init_node
from wgmesh_common import log, process, servicemanager
from wgmesh_common.paths import Paths


@pytest.fixture
def quiet_again():
    """Whatever a test turns on in the log module goes off after it."""
    root_level = logging.getLogger().level
    yield
    log.configure(verbose=False, daemon=False)
    logging.getLogger().setLevel(root_level)


@pytest.fixture
def journal_entries(monkeypatch, tmp_path):
    """The entries the journal handler hands to the journal, as the field
    dicts sd_journal_send gets (this host has no journald)."""
    socket_path = tmp_path / "journal.socket"
    socket_path.touch()
    monkeypatch.setattr(log, "JOURNAL_SOCKET", str(socket_path))
    monkeypatch.delenv("WGMESH_LOG")
    entries = []
    handler = log._handler.journal
    assert handler is not None, "python3-systemd's JournalHandler is used where it is installed"
    monkeypatch.setattr(handler, "send", lambda MESSAGE, **fields: entries.append({"MESSAGE": MESSAGE, **fields}))
    return entries


def test_an_event_reaches_the_journal_with_its_fields_and_priority(journal_entries):
    log.event("peer-down", "node 4 is down", "warning", peer=4, link="wgm4", rtt=None)
    log.event("peer-up", "node 4 is up again", "notice", peer=4, links="wgm4,wgm4v6")
    log.info("a plain line")
    down, up, plain = journal_entries
    assert down["MESSAGE"] == "node 4 is down"
    assert (down["WGMESH_EVENT"], down["WGMESH_PEER"], down["WGMESH_LINK"]) == ("peer-down", "4", "wgm4")
    assert "WGMESH_RTT" not in down, "a field without a value is left out"
    assert down["PRIORITY"] == "4" and up["PRIORITY"] == "5" and plain["PRIORITY"] == "6"
    assert up["WGMESH_LINKS"] == "wgm4,wgm4v6"
    assert down["SYSLOG_IDENTIFIER"] == os.path.basename(sys.argv[0])
    assert "WGMESH_EVENT" not in plain
    # The code location is the caller's, not the log module's.
    assert down["CODE_FILE"] == __file__ and plain["CODE_FILE"] == __file__


def test_without_a_journal_a_line_on_stderr_names_program_level_and_fields(capfd):
    log.event("link-up", "link wgm4 is up", link="wgm4", peer=4)
    log.debug("not shown without --verbose")
    err = capfd.readouterr().err
    assert err == f"{os.path.basename(sys.argv[0])}: info: link wgm4 is up [event=link-up link=wgm4 peer=4]\n"


def test_verbose_shows_debug_lines_and_every_external_command(capfd, quiet_again):
    process.run(["true"])
    assert capfd.readouterr().err == ""
    log.configure(verbose=True)
    process.run(["sh", "-c", "exit 3"], input="a secret on stdin\n", text=True)
    err = capfd.readouterr().err
    assert ": debug: running sh -c 'exit 3'\n" in err
    assert ": debug: sh exited with status 3\n" in err
    assert "secret" not in err


def _wgmesh(paths: Paths, *args: str, bin_dir) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env.update(WGMESH_ROOT=str(paths.root), WGMESH_LOG="stderr", PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run([VENV_BIN / "wgmesh", *args], env=env, capture_output=True, text=True, timeout=60)


def test_verbose_works_before_and_after_the_subcommand_and_logs_each_systemctl(paths, tmp_path):
    init_node(paths, 0, '[system]\nservice_manager = "systemd"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "systemctl").chmod(0o755)
    quiet = _wgmesh(paths, "down", bin_dir=bin_dir)
    assert quiet.returncode == 0 and "debug" not in quiet.stderr, quiet.stderr
    for args in (("--verbose", "down"), ("down", "-v")):
        loud = _wgmesh(paths, *args, bin_dir=bin_dir)
        assert loud.returncode == 0, loud.stderr
        assert "wgmesh: debug: running systemctl stop wgmesh.target\n" in loud.stderr, loud.stderr
    assert calls.read_text() == "stop wgmesh.target\n" * 3


def test_verbose_is_an_option_of_every_program():
    for program in ("wgmesh", "wgmesh-allocator", "wgmesh-cost-writer", "wgmesh-join-helper", "wgmesh-join-server",
                    "wgmesh-link", "wgmesh-notifier", "wgmesh-prober", "wgmesh-vxlan-sync"):
        result = subprocess.run([VENV_BIN / program, "--help"], capture_output=True, text=True, timeout=60)
        assert "--verbose" in result.stdout, program


def test_pyroute2_errors_are_debug_output(tmp_path):
    """pyroute2 logs the missing WireGuard family as an error on the root
    logger (this host has no module; the kernel backend meets it): an
    answer, shown only with --verbose."""
    check = ("import sys\nfrom wgmesh_common import log\nfrom pyroute2 import WireGuard\n"
             "log.configure(verbose=sys.argv[1] == 'v')\n"
             "try:\n    WireGuard().close()\n    print(True)\nexcept Exception:\n    print(False)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")}
    env["WGMESH_LOG"] = "stderr"
    quiet = subprocess.run([sys.executable, "-c", check, "q"], env=env, capture_output=True, text=True, timeout=60)
    loud = subprocess.run([sys.executable, "-c", check, "v"], env=env, capture_output=True, text=True, timeout=60)
    if quiet.stdout.strip() == "True":
        pytest.skip("this kernel has WireGuard: pyroute2 has nothing to complain about")
    assert quiet.stderr == "", quiet.stderr
    assert "Generic netlink protocol wireguard not found" in loud.stderr, loud.stderr


def test_notify_sends_each_state_to_the_notify_socket(monkeypatch, tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        assert servicemanager.notify("READY=1") is False, "no NOTIFY_SOCKET: not a notify service"
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        for state in ("READY=1", "WATCHDOG=1", "STATUS=configuring wgm4 failed: no key"):
            assert servicemanager.notify(state) is True
            assert listener.recv(4096).decode() == state
        servicemanager.notify("READY=1", unset_environment=True)
        assert listener.recv(4096) == b"READY=1"
        assert "NOTIFY_SOCKET" not in os.environ, "what the service starts next must not speak for it"


def test_no_sockets_are_passed_without_socket_activation():
    assert servicemanager.passed_sockets() == []
