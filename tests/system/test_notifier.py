"""wgmesh-notifier under systemd, the .deb installed with apt: a gotify-API
server on node 0 (tests/gotify_server.py, a real HTTP server that stores
each POST /message), only node 0 configured, a three-node mesh."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import report, wait_until
from tests.system.conftest import start_mesh_lab

NODE0_URL = "http://198.18.0.2:8080"
TOKEN = "AsysTestGotifyT0ken"
PORT = 8099
STORE = "/var/tmp/gotify.jsonl"
SERVER = Path(__file__).parents[1] / "gotify_server.py"


def start_gotify(node) -> None:
    node.run(["systemd-run", "--unit=gotify-test", "python3", "/lab/gotify_server.py", str(PORT), STORE])
    assert wait_until(lambda: node.run(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)"],
                                       check=False).returncode == 0, 20), "the gotify server never listened"


def received(node) -> list[dict]:
    text = node.run(["cat", STORE], check=False).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def outbox_size(node) -> int:
    text = node.run(["cat", "/var/lib/wgmesh/notifier.json"], check=False).stdout
    if not text:
        return 0
    return sum(len(box["messages"]) for box in json.loads(text)["outboxes"].values())


def ospf_full(node) -> int:
    return node.run(["birdc", "-s", "/run/wgmesh/bird.ctl", "show", "ospf", "neighbors", "wgmesh4"],
                    check=False).stdout.count("Full")


def diagnose(node) -> str:
    """What the notifier has and what the journal holds, for a failure."""
    return "\n".join([
        f"received: {received(node)}",
        node.journal("wgmesh-notifier.service", lines=30),
        node.journal("gotify-test.service", lines=10),
        node.run(["ls", "-la", "/var/tmp"], check=False).stdout,
        node.run(["cat", "/var/lib/wgmesh/notifier.json"], check=False).stdout,
        node.run(["journalctl", "--no-pager", "-o", "json", "WGMESH_EVENT=peer-down"], check=False).stdout[-1500:],
        node.run(["systemctl", "status", "--no-pager", "wgmesh-notifier.service"], check=False).stdout[-1500:],
    ])


def about_node4(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["title"].startswith(f"wgmesh: node 4 {kind}")]


def flips(message: dict) -> list[str]:
    """The downs and ups of node 4 a message tells of, in order: its kind
    for a single event, its listed events for a summary (the prober's
    degraded/recovered for the same peer may share a message with them)."""
    title = message["title"]
    if not title.startswith("wgmesh: node 4 "):
        return [f"not about node 4: {title}"]
    if not title.startswith("wgmesh: node 4 changed "):
        kind = title.split()[3]
        return [kind] if kind in ("down", "up") else []
    kinds = [line.split(": ", 1)[1].split()[0] for line in message["message"].splitlines() if line.startswith("- ")]
    return [kind for kind in kinds if kind in ("down", "up")]


def all_flips(messages: list[dict]) -> list[str]:
    return [kind for message in messages for kind in flips(message)]


def windows_open(node) -> int:
    text = node.run(["cat", "/var/lib/wgmesh/notifier.json"], check=False).stdout
    return len(json.loads(text)["windows"]) if text else 0


def peer4_events(node, event: str) -> int:
    """How many `event` entries about node 4 the journal holds (all boots)."""
    out = node.run(["journalctl", "--no-pager", "-o", "cat", f"WGMESH_EVENT={event}", "WGMESH_PEER=4"],
                   check=False).stdout
    return len([line for line in out.splitlines() if line.strip() and not line.startswith("-- ")])


def gotify_running(node) -> bool:
    return node.run(["systemctl", "is-active", "gotify-test.service"], check=False).stdout.strip() == "active"


def calm(mesh) -> None:
    """Every node up, the links Full, nothing pending, the server up and its
    store empty: where each test starts (one that failed half-way must not
    spoil the next)."""
    node0, node4 = mesh[0], mesh[4]
    for node in (node0, node4):
        if not node.is_up():
            node.boot()
            node.wait_running(timeout=120)
    if not gotify_running(node0):
        start_gotify(node0)
    assert wait_until(lambda: ospf_full(node0) == 4, timeout=90, interval=1), "the mesh never came back to Full"
    time.sleep(5)  # the notifier's next poll and GATHER: a return is in its window by now
    assert wait_until(lambda: windows_open(node0) == 0 and outbox_size(node0) == 0, timeout=60, interval=1), \
        diagnose(node0)
    node0.run(["rm", "-f", STORE])


@pytest.fixture(scope="module")
def notifying_mesh(deb):
    """Nodes 0, 2 and 4 joined, a gotify server on node 0 and only node 0
    notifying it: shared by the tests below, which run in order and each
    begins by waiting for a calm mesh (calm())."""
    mesh = start_mesh_lab((0, 2, 4), deb, name_prefix="sn")
    try:
        node0, node2, node4 = mesh[0], mesh[2], mesh[4]
        node0.run(["wgmesh", "init", "0", "--public"])
        # Short windows and retries keep the test's events apart and its wait
        # short (coalescing itself is unit-tested).
        node0.run(["wgmesh", "set", "notify.coalesce_window", "5"])
        node0.run(["wgmesh", "set", "notify.retry_max", "10"])
        node0.run(["systemctl", "restart", "wgmesh-notifier.service"])
        token = node0.run(["wgmesh", "token"]).stdout.strip()
        for node, mesh_id in ((node2, 2), (node4, 4)):
            node.run(["wgmesh", "init", str(mesh_id)])
            node.run(["wgmesh", "connect", NODE0_URL, token])
        assert wait_until(lambda: ospf_full(node0) == 4, timeout=60), "the four links never reached OSPF Full"
        shutil.copy(SERVER, mesh.lab.share_dir / SERVER.name)
        start_gotify(node0)
        # The join's events are not what these tests are about.
        node0.run(["wgmesh", "notify", "add", f"gotify://127.0.0.1:{PORT}/{TOKEN}", "--events", "down,up"])
        assert node0.run(["systemctl", "is-active", "wgmesh-notifier.service"], check=False).stdout.strip() == "active"
        yield mesh
    finally:
        mesh.lab.close(raise_on_problems=sys.exc_info()[0] is None)


def test_a_killed_peer_and_its_return_reach_gotify_once_each_also_across_an_outage(notifying_mesh):
    node0, node4 = notifying_mesh[0], notifying_mesh[4]
    listed = node0.run(["wgmesh", "notify", "list"]).stdout
    assert TOKEN not in listed and "gotify://127.0.0.1/***" in listed

    tested = node0.run(["wgmesh", "notify", "test"], check=False)
    assert tested.returncode == 0 and "sent" in tested.stdout and TOKEN not in tested.stdout, diagnose(node0)
    assert [m["title"] for m in received(node0)] == ["wgmesh: test notification"]
    node0.run(["rm", "-f", STORE])

    # Steady: nothing.
    time.sleep(10)
    assert received(node0) == [], diagnose(node0)

    # 1. Node 4's container killed: one message within 15 s, naming it and its links.
    node4.kill()
    killed = time.monotonic()
    assert wait_until(lambda: about_node4(received(node0), "down"), timeout=15, interval=0.5), \
        diagnose(node0)
    report(f"node 0's phone heard of node 4's death {time.monotonic() - killed:.1f} s after the kill")
    (down,) = received(node0)
    assert down["token"] == TOKEN and "node 0" in down["title"]
    assert "wgm4, wgm4v6" in down["message"] and down["priority"] == 8

    # 2. Back: one message.
    node4.boot()
    node4.wait_running(timeout=120)
    assert wait_until(lambda: "up" in all_flips(received(node0)), timeout=90, interval=1), \
        diagnose(node0)
    time.sleep(3)
    assert len(received(node0)) == 2

    # 3. The server away while node 4 dies and comes back; the notifier
    # restarted in between (the messages wait in its outbox); later the
    # server is back: both arrive, once each.
    node0.run(["systemctl", "stop", "gotify-test.service"])
    node4.kill()
    assert wait_until(lambda: outbox_size(node0) == 1, timeout=20, interval=0.5)
    node4.boot()
    node4.wait_running(timeout=120)
    assert wait_until(lambda: outbox_size(node0) == 2, timeout=120, interval=1), \
        diagnose(node0)
    node0.run(["systemctl", "restart", "wgmesh-notifier.service"])
    time.sleep(20)
    assert len(received(node0)) == 2
    node0.run(["rm", "-f", STORE])
    start_gotify(node0)
    assert wait_until(lambda: len(received(node0)) >= 2, timeout=60, interval=1), \
        diagnose(node0)
    time.sleep(12)
    messages = received(node0)
    assert len(messages) == 2 and all_flips(messages) == ["down", "up"], messages
    assert outbox_size(node0) == 0
    journal = node0.journal("wgmesh-notifier.service")
    assert TOKEN not in journal and "failed" in journal


def test_an_orderly_poweroff_and_the_boot_reach_gotify_once_each(notifying_mesh):
    node0, node4 = notifying_mesh[0], notifying_mesh[4]
    calm(notifying_mesh)
    started = time.monotonic()
    node4.poweroff()
    assert wait_until(lambda: "down" in all_flips(received(node0)),
                      timeout=max(0.5, 15 - (time.monotonic() - started)), interval=0.5), diagnose(node0)
    report(f"node 0's phone heard of node 4's poweroff {time.monotonic() - started:.1f} s after it began")
    (down,) = received(node0)
    assert "node 0" in down["title"] and "wgm4, wgm4v6" in down["message"]

    node4.boot()
    node4.wait_running(timeout=120)
    assert wait_until(lambda: "up" in all_flips(received(node0)), timeout=90, interval=1), diagnose(node0)
    time.sleep(8)  # past the 5 s window: no second message about either
    messages = received(node0)
    assert len(messages) == 2 and all_flips(messages) == ["down", "up"], diagnose(node0)


def test_a_notifying_node_rebooted_before_delivery_delivers_once(notifying_mesh):
    node0, node4 = notifying_mesh[0], notifying_mesh[4]
    calm(notifying_mesh)
    node0.run(["systemctl", "stop", "gotify-test.service"])
    node4.kill()
    assert wait_until(lambda: outbox_size(node0) == 1, timeout=20, interval=0.5), diagnose(node0)
    node0.poweroff()
    node0.boot()
    node0.wait_running(timeout=120)
    assert received(node0) == []
    start_gotify(node0)
    assert wait_until(lambda: received(node0), timeout=60, interval=1), diagnose(node0)
    # Its own links going away at the poweroff and coming back at the boot
    # are no news about node 2; the message waited through the reboot and
    # goes out once.
    time.sleep(15)
    messages = received(node0)
    assert len(messages) == 1 and flips(messages[0]) == ["down"], diagnose(node0)
    assert outbox_size(node0) == 0


def test_a_flapping_peer_gets_its_first_message_at_once_and_one_summary(notifying_mesh):
    node0 = notifying_mesh[0]
    lab = notifying_mesh.lab
    calm(notifying_mesh)
    # Long enough for five flaps of ~10 s each (ospf.dead is 4 s, the
    # notifier polls every 2 s); the test checks that they fit.
    window = 120
    node0.run(["wgmesh", "set", "notify.coalesce_window", str(window)])
    node0.run(["systemctl", "restart", "wgmesh-notifier.service"])
    downs, ups = peer4_events(node0, "peer-down"), peer4_events(node0, "peer-up")
    try:
        started = time.monotonic()
        for flap in range(1, 6):
            # Node 4 cut off on the underlay: node 0's OSPF neighbour dies
            # after ospf.dead; cleared, it comes back within seconds.
            lab.impair(0, 4, loss=1.0)
            assert wait_until(lambda flap=flap: peer4_events(node0, "peer-down") >= downs + flap, timeout=30, interval=0.5), \
                diagnose(node0)
            if flap == 1:
                assert wait_until(lambda: received(node0), timeout=15, interval=0.5), diagnose(node0)
                report(f"the first of five flaps reached gotify {time.monotonic() - started:.1f} s after the cut")
            lab.impair(0, 4)
            assert wait_until(lambda flap=flap: peer4_events(node0, "peer-up") >= ups + flap, timeout=30, interval=0.5), \
                diagnose(node0)
        flapping = time.monotonic() - started
        report(f"five flaps took {flapping:.1f} s (window {window} s)")
        assert flapping < window - 10, "the flaps did not fit in the window: the test's premise, not the notifier"
        (first,) = received(node0)
        assert flips(first) == ["down"], first
        assert wait_until(lambda: len(received(node0)) >= 2, timeout=window - flapping + 30, interval=1), \
            diagnose(node0)
        time.sleep(10)
        messages = received(node0)
        assert len(messages) == 2, diagnose(node0)
        summary = messages[1]
        assert summary["title"].startswith("wgmesh: node 4 changed") and "now " in summary["title"], summary
        # What happened after the first message: the other four downs and
        # all five ups, in order (the prober may add degraded/recovered).
        assert flips(summary) == ["up", "down"] * 4 + ["up"], summary
    finally:
        lab.impair(0, 4)
        node0.run(["wgmesh", "set", "notify.coalesce_window", "5"], check=False)
        node0.run(["systemctl", "restart", "wgmesh-notifier.service"], check=False)


def test_a_peer_event_a_local_user_forges_in_the_journal_is_not_notified(notifying_mesh):
    node0 = notifying_mesh[0]
    # Not calm(): the quality events of the flapping test before may keep a
    # window about node 4 open for their hold-down; the peers below are
    # nodes no test uses, so nothing else can be mistaken for them.
    if not gotify_running(node0):
        start_gotify(node0)
    node0.run(["rm", "-f", STORE])
    forged = "WGMESH_EVENT=peer-down\nWGMESH_PEER={peer}\nMESSAGE=node {peer} is down\n"
    node0.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "logger", "--journald"],
              input=forged.format(peer=102))
    # The same entry from root, after it in the journal: the notifier reads in
    # order, so once this one is delivered the user's would have been too.
    node0.run(["logger", "--journald"], input=forged.format(peer=100))
    assert wait_until(lambda: any(m["title"].startswith("wgmesh: node 100 ") for m in received(node0)),
                      timeout=30, interval=0.5), diagnose(node0)
    time.sleep(3)
    titles = [m["title"] for m in received(node0)]
    assert [t for t in titles if t.startswith("wgmesh: node 100 ")] and \
        not [t for t in titles if "node 102" in t], titles
    # The forgery is in the journal, a peer-down like any other but for journald's own _UID.
    nobody = node0.run(["id", "-u", "nobody"]).stdout.strip()
    forgeries = node0.run(["journalctl", "--no-pager", "-o", "cat", "WGMESH_EVENT=peer-down", "WGMESH_PEER=102",
                           f"_UID={nobody}"]).stdout
    assert forgeries.splitlines() == ["node 102 is down"], forgeries
