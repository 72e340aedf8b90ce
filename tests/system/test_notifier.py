"""wgmesh-notifier under systemd, the .deb installed with apt: a gotify-API
server on node 0 (tests/gotify_server.py, a real HTTP server that stores
each POST /message), only node 0 configured, a three-node mesh."""

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.helpers import report, wait_until

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


@pytest.mark.ids((0, 2, 4))
def test_a_killed_peer_and_its_return_reach_gotify_once_each_also_across_an_outage(mesh_lab):
    node0, node2, node4 = mesh_lab[0], mesh_lab[2], mesh_lab[4]
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
    shutil.copy(SERVER, mesh_lab.lab.share_dir / SERVER.name)
    start_gotify(node0)
    # The join's events are not what this test is about.
    node0.run(["wgmesh", "notify", "add", f"gotify://127.0.0.1:{PORT}/{TOKEN}", "--events", "down,up"])
    assert node0.run(["systemctl", "is-active", "wgmesh-notifier.service"], check=False).stdout.strip() == "active"
    listed = node0.run(["wgmesh", "notify", "list"]).stdout
    assert TOKEN not in listed and f"gotify://127.0.0.1/***" in listed

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
    assert wait_until(lambda: about_node4(received(node0), "up"), timeout=90, interval=1), \
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
    assert [m["title"].split()[3] for m in messages] == ["down", "up"], messages
    assert outbox_size(node0) == 0
    journal = node0.journal("wgmesh-notifier.service")
    assert TOKEN not in journal and "failed" in journal
