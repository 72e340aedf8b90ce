"""wgmesh-notifier's delivery through the real apprise to a real gotify-API
server on loopback: once each, retried while the server is away, kept
across a restart, and no URL or token in any log line."""

import logging
import re
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from unit_helpers import init_node
from wgmesh_common import notification, notifystate, notifyurls
from wgmesh_common.commands.notifier import Notifier
from wgmesh_common.commands.wgmesh import main as wgmesh_main

sys.path.insert(0, str(Path(__file__).parents[1]))
from gotify_server import GotifyServer

TOKEN = "AQsecretGotifyTok3n"
T0 = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # requests honours proxy variables; the server is on 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gotify():
    server = GotifyServer().start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peer_entry(kind: str, peer: int, when: float, cursor: str) -> tuple[dict, float, str]:
    fields = {"WGMESH_EVENT": kind, "WGMESH_PEER": str(peer), "WGMESH_LINKS": f"wgm{peer},wgm{peer}v6",
              "WGMESH_SINCE": f"{when:.3f}", "WGMESH_RTT": "2.5", "WGMESH_LOSS": "0.0"}
    return fields, when, cursor


def notifier_for(paths, *urls: str, events: tuple[str, ...] | None = None) -> Notifier:
    """An initialised node's notifier, sending to each URL, its targets loaded."""
    node = init_node(paths)
    for url in urls:
        notifyurls.add(paths, url, *([events] if events else []))
    notifier = Notifier(node)
    notifier.load_targets()
    return notifier


def gotify_url(port: int) -> str:
    return f"gotify://127.0.0.1:{port}/{TOKEN}"


def settle(notifier: Notifier, now: float) -> None:
    notifier.close_windows(now)
    notifier.deliver(now)


def test_a_peer_down_reaches_gotify_once_naming_both_nodes(paths, gotify) -> None:
    notifier = notifier_for(paths, gotify_url(gotify.port))
    notifier.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    settle(notifier, T0)
    assert gotify.messages == [], "the first message waits GATHER seconds for the peer's other link"
    for step in range(1, 10):
        settle(notifier, T0 + step)
    assert len(gotify.messages) == 1
    sent = gotify.messages[0]
    assert sent["token"] == TOKEN
    assert "node 4" in sent["title"] and "node 0" in sent["title"]
    assert "wgm4, wgm4v6" in sent["message"] and "last RTT 2.5 ms" in sent["message"]
    assert sent["priority"] == 8, "a dead peer is sent at gotify's high priority"
    assert notifystate.load(paths)["cursor"] == "c1"


def test_while_the_server_is_away_messages_wait_then_arrive_once_each(paths) -> None:
    port = free_port()
    notifier = notifier_for(paths, gotify_url(port))
    notifier.take_entries([peer_entry("peer-down", 4, T0, "c1"), peer_entry("peer-down", 5, T0 + 1, "c2")])
    now = T0 + notification.GATHER + 1
    settle(notifier, now)
    outbox = notifier.state["outboxes"][notifystate.url_key(notifier.targets[0].url)]
    assert len(outbox["messages"]) == 2 and outbox["attempts"] == 1
    # A minute later the server is back; the retry is due by then.
    server = GotifyServer(port).start()
    try:
        for step in range(0, 400, 5):
            settle(notifier, now + 60 + step)
        assert sorted(m["title"].split()[2] for m in server.messages) == ["4", "5"]
        assert notifystate.load(paths)["outboxes"][notifystate.url_key(notifier.targets[0].url)]["messages"] == []
    finally:
        server.stop()


def test_a_message_pending_at_a_restart_is_delivered_once_after_it(paths, gotify) -> None:
    node = init_node(paths)
    notifyurls.add(paths, f"gotify://127.0.0.1:{gotify.port}/{TOKEN}")
    before = Notifier(node)
    before.load_targets()
    before.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    before.close_windows(T0 + notification.GATHER)  # enqueued, then the notifier dies
    after = Notifier(init_node(paths))
    after.load_targets()
    assert after.state["cursor"] == "c1", "the restarted notifier seeks past what it already took"
    for step in range(5):
        settle(after, T0 + notification.GATHER + step)
    assert len(gotify.messages) == 1


def test_a_window_open_at_a_restart_is_closed_after_it(paths, gotify) -> None:
    node = init_node(paths)
    notifyurls.add(paths, f"gotify://127.0.0.1:{gotify.port}/{TOKEN}")
    before = Notifier(node)
    before.load_targets()
    before.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    after = Notifier(init_node(paths))
    after.load_targets()
    settle(after, T0 + notification.GATHER)
    assert len(gotify.messages) == 1


def test_one_failing_url_holds_up_no_other(paths, gotify) -> None:
    notifier = notifier_for(paths, gotify_url(free_port()), gotify_url(gotify.port))
    notifier.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    settle(notifier, T0 + notification.GATHER)
    assert len(gotify.messages) == 1


def test_a_url_gets_only_the_events_it_asked_for(paths, gotify) -> None:
    notifier = notifier_for(paths, gotify_url(gotify.port), events=("up",))
    notifier.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    settle(notifier, T0 + notification.GATHER)
    notifier.take_entries([peer_entry("peer-up", 5, T0 + 3, "c2")])
    settle(notifier, T0 + 3 + notification.GATHER)
    assert [m["title"].split()[3] for m in gotify.messages] == ["up"]


def test_without_apprise_messages_wait_and_it_is_said_once(paths, monkeypatch, capfd) -> None:
    node = init_node(paths)
    notifyurls.add(paths, f"gotify://127.0.0.1:{free_port()}/{TOKEN}")
    monkeypatch.setitem(sys.modules, "apprise", None)  # what `import apprise` meets when it is not installed
    notifier = Notifier(node)
    notifier.load_targets()
    notifier.take_entries([peer_entry("peer-down", 4, T0, "c1")])
    for step in range(5):
        settle(notifier, T0 + notification.GATHER + step)
    err = capfd.readouterr().err
    assert err.count("apprise is not installed") == 1
    assert len(notifier.state["outboxes"][notifystate.url_key(notifier.targets[0].url)]["messages"]) == 1


def test_no_log_line_holds_the_token_not_even_apprises(paths, gotify, capfd) -> None:
    # An operator's Python logging at its loudest: whatever apprise logs
    # would be printed.
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        notifier = notifier_for(paths, gotify_url(free_port()), gotify_url(gotify.port))
        notifier.take_entries([peer_entry("peer-down", 4, T0, "c1")])
        settle(notifier, T0 + notification.GATHER)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    out, err = capfd.readouterr()
    assert len(gotify.messages) == 1
    assert "failed" in err, "the failing URL is reported"
    assert TOKEN not in out + err
    # apprise's own lines show a URL with the token shortened (A...n): no
    # URL may appear but masked.
    urls = re.findall(r"\w+://\S*", out + err)
    assert urls and all(re.fullmatch(r"\w+://(127\.0\.0\.1/)?\*\*\*", u) for u in urls), urls


def test_the_notify_commands_add_list_test_remove_and_never_print_the_token(paths, gotify, monkeypatch) -> None:
    init_node(paths)
    runner = CliRunner(mix_stderr=False)

    def wgmesh(*args: str):
        result = runner.invoke(wgmesh_main, ["notify", *args], env={"WGMESH_ROOT": str(paths.root)})
        assert TOKEN not in result.stdout + result.stderr
        return result

    url = f"gotify://127.0.0.1:{gotify.port}/{TOKEN}"
    assert wgmesh("add", url, "--events", "down,up").exit_code == 0
    listed = wgmesh("list")
    assert listed.stdout.strip() == "1  gotify://127.0.0.1/***  down,up"
    tested = wgmesh("test")
    assert tested.exit_code == 0 and "sent" in tested.stdout
    assert [m["title"] for m in gotify.messages] == ["wgmesh: test notification"]
    bad = wgmesh("add", f"nosuchscheme://{TOKEN}")
    assert bad.exit_code != 0 and "nosuchscheme://***" in str(bad.exception or bad.stderr)
    assert wgmesh("remove", url).exit_code == 0
    assert wgmesh("list").stdout == ""
    gotify.stop()
    notifyurls.add(paths, f"gotify://127.0.0.1:{free_port()}/{TOKEN}")
    failing = wgmesh("test")
    assert failing.exit_code != 0 and "FAILED" in failing.stdout
