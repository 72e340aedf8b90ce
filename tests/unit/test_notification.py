"""wgmesh-notifier's pure core: journal entries -> events, messages,
coalescing, OSPF neighbour changes, the per-URL outbox, the URL file."""

import random

import pytest

from unit_helpers import file_mode
from wgmesh_common import notification, notifystate, notifyurls
from wgmesh_common.errors import ConfigError
from wgmesh_common.notification import PeerEvent

T0 = 1_800_000_000.0
WINDOW = 30


def entry(event: str, **fields) -> dict:
    return {"WGMESH_EVENT": event, **{f"WGMESH_{k.upper()}": str(v) for k, v in fields.items()}}


# ------------------------------------------------------------ events


def test_the_notifier_follows_its_events_only_from_root() -> None:
    # sd-journal ORs the WGMESH_EVENT matches and ANDs them with _UID, which
    # journald sets itself: a user's `logger --journald WGMESH_EVENT=...` stays out.
    matches = notification.journal_matches()
    assert matches[-1] == "_UID=0" and [m for m in matches if m.startswith("_")] == ["_UID=0"]
    assert sorted(matches[:-1]) == sorted(f"WGMESH_EVENT={name}" for name in notification.EVENT_KINDS)


def test_peer_down_entry_becomes_a_down_event_with_its_links_and_figures() -> None:
    event = notification.event_from_journal(
        entry("peer-down", peer=4, links="wgm4,wgm4v6", since=T0, rtt=1.25, loss=0), T0 + 1)
    assert event == PeerEvent("down", 4, T0, ("wgm4", "wgm4v6"), rtt=1.25, loss=0.0)


def test_link_removed_names_only_the_link_and_the_peer_comes_from_its_name() -> None:
    event = notification.event_from_journal(entry("link-removed", link="wgm17v6"), T0)
    assert (event.kind, event.peer, event.links) == ("left", 17, ("wgm17v6",))


@pytest.mark.parametrize("fields", [
    entry("bird-reconfigured", interfaces=3),
    entry("vxlan-add", device="wgmx4"),
    entry("peer-down", links="eth0"),
    entry("peer-down", peer="nonsense"),
    {"MESSAGE": "no event at all"},
])
def test_entries_about_no_peer_are_ignored(fields: dict) -> None:
    assert notification.event_from_journal(fields, T0) is None


def test_degraded_carries_its_reason() -> None:
    event = notification.event_from_journal(
        entry("link-degraded", link="wgm3", peer=3, reason="loss 40 %", rtt=80, loss=40), T0)
    assert (event.kind, event.reason, event.rtt, event.loss) == ("degraded", "loss 40 %", 80.0, 40.0)


# ------------------------------------------------------------ messages


def test_a_down_message_names_both_nodes_the_links_the_figures_and_since_when() -> None:
    message = notification.build_message(0, [PeerEvent("down", 4, T0, ("wgm4", "wgm4v6"), rtt=1.5, loss=0.0)])
    text = message.title + "\n" + message.body
    assert "node 4" in text and "node 0" in text
    assert "wgm4, wgm4v6" in text
    assert "last RTT 1.5 ms" in text and "loss 0 %" in text
    assert notification.clock(T0) in text
    assert (message.priority, message.notify_type) == ("high", "failure")


@pytest.mark.parametrize("kind,priority", [("down", "high"), ("up", "normal"), ("recovered", "low"),
                                           ("degraded", "normal"), ("joined", "low"), ("left", "normal")])
def test_the_priority_follows_the_event(kind: str, priority: str) -> None:
    assert notification.build_message(0, [PeerEvent(kind, 2, T0)]).priority == priority


def test_a_summary_lists_each_event_and_ends_with_the_state_now() -> None:
    events = [PeerEvent("down", 4, T0 + 1), PeerEvent("up", 4, T0 + 5), PeerEvent("down", 4, T0 + 9),
              PeerEvent("up", 4, T0 + 12)]
    message = notification.build_message(0, events)
    assert "4 times, now up" in message.title
    assert message.body.count("\n- ") == 4
    assert message.body.splitlines()[-1].startswith("Now: up since " + notification.clock(T0 + 12))
    assert message.priority == "normal"


# ------------------------------------------------------------ coalescing


ALL_KINDS = ("down", "up", "degraded", "recovered", "joined", "left")


def run_coalescer(events: list[PeerEvent], until: float, step: float = 0.5,
                  kinds: tuple[str, ...] = ALL_KINDS) -> list[tuple[float, object]]:
    """Feed events in time order, ticking every `step` seconds; (when, message)
    as a URL subscribed to `kinds` gets them."""
    windows, sent, pending = {}, [], sorted(events, key=lambda e: e.time)
    now = T0
    while now <= until:
        while pending and pending[0].time <= now:
            windows = notification.coalesce_add(windows, pending.pop(0), WINDOW)
        windows, batches = notification.coalesce_due(windows, now, WINDOW)
        messages = [notification.message_for(0, batch, kinds) for batch in batches]
        sent.extend((now, m) for m in messages if m is not None)
        now += step
    return sent


def test_one_event_is_one_message_sent_at_once() -> None:
    sent = run_coalescer([PeerEvent("down", 4, T0, ("wgm4",))], until=T0 + 3 * WINDOW)
    assert len(sent) == 1
    assert sent[0][0] <= T0 + notification.GATHER
    assert sent[0][1].kinds == ("down",)


def test_a_peer_flapped_five_times_in_the_window_gets_the_first_message_and_one_summary() -> None:
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    times = sorted(T0 + rng.uniform(3, WINDOW - 1) for _ in range(9))
    events = [PeerEvent("down", 4, T0, ("wgm4",))]
    events += [PeerEvent("up" if i % 2 == 0 else "down", 4, t, ("wgm4",)) for i, t in enumerate(times)]
    sent = run_coalescer(events, until=T0 + 4 * WINDOW)
    assert [m.kinds for _, m in sent] == [("down",), ("up", "down")]
    _first, summary = sent[0][1], sent[1][1]
    assert sent[1][0] >= T0 + WINDOW
    assert summary.body.count("\n- ") == 9
    assert "now up" in summary.title


def test_the_ipv4_and_ipv6_link_of_a_join_are_one_message() -> None:
    sent = run_coalescer([PeerEvent("joined", 5, T0, ("wgm5",)), PeerEvent("joined", 5, T0 + 0.3, ("wgm5v6",))],
                         until=T0 + 3 * WINDOW)
    assert len(sent) == 1
    assert "wgm5, wgm5v6" in sent[0][1].body


def test_peers_are_coalesced_separately() -> None:
    sent = run_coalescer([PeerEvent("down", 4, T0), PeerEvent("down", 5, T0 + 1)], until=T0 + 3 * WINDOW)
    assert sorted(m.peer for _, m in sent) == [4, 5]
    assert all(when <= T0 + 1 + notification.GATHER for when, _ in sent)


def test_an_event_after_a_quiet_window_goes_out_at_once_again() -> None:
    sent = run_coalescer([PeerEvent("down", 4, T0), PeerEvent("up", 4, T0 + 2 * WINDOW)], until=T0 + 4 * WINDOW)
    assert [m.kinds for _, m in sent] == [("down",), ("up",)]
    assert sent[1][0] <= T0 + 2 * WINDOW + notification.GATHER


def test_coalescing_windows_survive_a_save_and_load(paths) -> None:
    windows = notification.coalesce_add({}, PeerEvent("down", 4, T0, ("wgm4",)), WINDOW)
    state = {**notifystate.empty(), "windows": windows}
    notifystate.save(paths, state)
    reloaded = notifystate.load(paths)["windows"]
    _, batches = notification.coalesce_due(reloaded, T0 + 10, WINDOW)
    assert [[event.kind for event in batch] for batch in batches] == [["down"]]


def test_a_url_hears_only_of_the_events_it_subscribed_to_also_in_a_summary() -> None:
    batch = [PeerEvent("down", 4, T0), PeerEvent("degraded", 4, T0 + 1), PeerEvent("up", 4, T0 + 2)]
    summary = notification.message_for(0, batch, ("down", "up"))
    assert summary.kinds == ("down", "up") and "now up" in summary.title and "degraded" not in summary.body
    only_up = notification.message_for(0, batch[1:], ("down", "up"))
    assert only_up.kinds == ("up",) and "node 4 up" in only_up.title
    assert notification.message_for(0, batch, ("joined", "left")) is None
    # What the container test met: down, then a quality penalty and the return in one window.
    sent = run_coalescer([PeerEvent("down", 4, T0), PeerEvent("degraded", 4, T0 + 5), PeerEvent("up", 4, T0 + 8)],
                         until=T0 + 3 * WINDOW, kinds=("down", "up"))
    assert [m.kinds for _, m in sent] == [("down",), ("up",)]


# ------------------------------------------------------------ OSPF neighbours


LINKS = {"wgm4": 4, "wgm4v6": 4, "wgm5": 5}


def rows(*full: str, other: dict | None = None) -> list[dict]:
    found = [{"router_id": "10.0.0.1", "state": "Full", "interface": name} for name in full]
    return found + [{"router_id": "10.0.0.1", "state": state, "interface": name}
                    for name, state in (other or {}).items()]


def test_a_peer_that_loses_its_last_full_neighbour_is_down_with_the_links_it_had() -> None:
    before = notification.neighbour_view(rows("wgm4", "wgm4v6", "wgm5"), LINKS, {})
    after = notification.neighbour_view(rows("wgm5", other={"wgm4": "Init"}), LINKS, before)
    assert notification.peer_changes(before, after, LINKS) == [("down", 4, ["wgm4", "wgm4v6"])]
    back = notification.neighbour_view(rows("wgm5", "wgm4v6"), LINKS, after)
    assert notification.peer_changes(after, back, LINKS) == [("up", 4, ["wgm4v6"])]


def test_links_lost_one_poll_apart_are_one_down_naming_both() -> None:
    before = notification.neighbour_view(rows("wgm4", "wgm4v6"), LINKS, {})
    one = notification.neighbour_view(rows("wgm4v6"), LINKS, before)
    none = notification.neighbour_view(rows(), LINKS, one)
    assert notification.peer_changes(before, one, LINKS) == []
    assert notification.peer_changes(one, none, LINKS) == [("down", 4, ["wgm4", "wgm4v6"])]


def test_one_link_of_two_lost_is_no_peer_change() -> None:
    before = notification.neighbour_view(rows("wgm4", "wgm4v6"), LINKS, {})
    after = notification.neighbour_view(rows("wgm4v6"), LINKS, before)
    assert notification.peer_changes(before, after, LINKS) == []


def test_a_peer_never_seen_full_is_neither_down_nor_up() -> None:
    first = notification.neighbour_view(rows(), LINKS, {})
    then = notification.neighbour_view(rows("wgm5"), LINKS, first)
    assert notification.peer_changes(first, then, LINKS) == []


def test_a_peer_whose_links_were_removed_is_not_reported_down() -> None:
    before = notification.neighbour_view(rows("wgm4", "wgm5"), LINKS, {})
    remaining = {"wgm5": 5}
    after = notification.neighbour_view(rows("wgm5"), remaining, before)
    assert notification.peer_changes(before, after, remaining) == []


# ------------------------------------------------------------ outboxes


def message(n: int) -> notification.Message:
    return notification.build_message(0, [PeerEvent("down", n % 200, T0 + n)])


def test_a_message_leaves_the_outbox_only_once_delivered() -> None:
    outbox = notifystate.enqueue(notifystate.empty_outbox(), message(1))
    first = notifystate.due(outbox, T0)
    assert first.id == message(1).id
    outbox = notifystate.failed(outbox, T0)
    assert len(outbox["messages"]) == 1
    outbox = notifystate.delivered(outbox, first)
    assert outbox["messages"] == [] and notifystate.due(outbox, T0 + 1000) is None


def test_retries_back_off_up_to_the_maximum() -> None:
    outbox = notifystate.enqueue(notifystate.empty_outbox(), message(1))
    now, pauses = T0, []
    for _ in range(12):
        assert notifystate.due(outbox, now) is not None
        outbox = notifystate.failed(outbox, now, base=10, maximum=300)
        assert notifystate.due(outbox, now) is None
        pauses.append(outbox["next_try"] - now)
        now = outbox["next_try"]
    assert pauses[:4] == [10, 20, 40, 80]
    assert max(pauses) == 300 and pauses[-1] == 300
    outbox = notifystate.delivered(outbox, notifystate.due(outbox, now))
    assert outbox["attempts"] == 0 and outbox["next_try"] == 0


def test_past_the_limit_the_oldest_go_and_one_message_says_how_many() -> None:
    outbox = notifystate.empty_outbox()
    for n in range(13):
        outbox = notifystate.enqueue(outbox, message(n), limit=10)
    assert [m["id"] for m in outbox["messages"]] == [message(n).id for n in range(3, 13)]
    first = notifystate.due(outbox, T0, limit=10)
    assert "3 notifications dropped" in first.title
    outbox = notifystate.delivered(outbox, first)
    assert notifystate.due(outbox, T0).id == message(3).id
    assert len(outbox["messages"]) == 10


def test_the_state_file_is_0600_and_holds_no_url(paths) -> None:
    url = "gotify://gotify.example.org/AbCdEfSecretToken"
    state = notifystate.keep_outboxes(notifystate.empty(), [url])
    key = notifystate.url_key(url)
    state["outboxes"][key] = notifystate.enqueue(state["outboxes"][key], message(1))
    notifystate.save(paths, state)
    path = notifystate.state_path(paths)
    assert file_mode(path) == 0o600
    assert "SecretToken" not in path.read_text()
    assert notifystate.load(paths)["outboxes"][key]["messages"][0]["id"] == message(1).id


def test_a_removed_url_takes_its_outbox_with_it_and_others_keep_theirs() -> None:
    state = notifystate.keep_outboxes(notifystate.empty(), ["json://a.example/x", "json://b.example/y"])
    a = notifystate.url_key("json://a.example/x")
    state["outboxes"][a] = notifystate.enqueue(state["outboxes"][a], message(1))
    kept = notifystate.keep_outboxes(state, ["json://a.example/x"])
    assert list(kept["outboxes"]) == [a] and len(kept["outboxes"][a]["messages"]) == 1


def test_an_unreadable_state_file_starts_afresh(paths) -> None:
    notifystate.state_path(paths).parent.mkdir(parents=True)
    notifystate.state_path(paths).write_text("{ not json")
    assert notifystate.load(paths) == notifystate.empty()


# ------------------------------------------------------------ URL file and masking


SECRET = "AzT0kenS3cret"


@pytest.mark.parametrize("url,shown", [
    (f"gotify://gotify.example.org/{SECRET}", "gotify://gotify.example.org/***"),
    (f"gotifys://gotify.example.org:8443/path/{SECRET}?priority=high", "gotifys://gotify.example.org/***"),
    (f"gotify://127.0.0.1:8080/{SECRET}", "gotify://127.0.0.1/***"),
    (f"discord://123456/{SECRET}", "discord://***"),
    (f"tgram://{SECRET}/12345", "tgram://***"),
    (f"mailto://user:{SECRET}@mail.example.org", "mailto://***"),
    (f"json://{SECRET}", "json://***"),
])
def test_mask_shows_no_token(url: str, shown: str) -> None:
    assert notifyurls.mask(url) == shown
    assert SECRET not in notifyurls.mask(url)


def test_the_url_file_is_0600_and_keeps_each_urls_events(paths) -> None:
    assert notifyurls.add(paths, f"gotify://a.example/{SECRET}")
    assert notifyurls.add(paths, "json://b.example/x", ("down", "up"))
    assert not notifyurls.add(paths, f"gotify://a.example/{SECRET}", ("down",))
    assert file_mode(notifyurls.urls_path(paths)) == 0o600
    targets = notifyurls.load(paths)
    assert [(t.url, t.kinds) for t in targets] == [("json://b.example/x", ("down", "up")),
                                                   (f"gotify://a.example/{SECRET}", ("down",))]
    assert notifyurls.remove(paths, "1").url == "json://b.example/x"
    assert notifyurls.remove(paths, f"gotify://a.example/{SECRET}").url.endswith(SECRET)
    assert notifyurls.load(paths) == []


@pytest.mark.parametrize("url", [f"{SECRET}", f"not a url://{SECRET}", f"gotify://host/{SECRET} x", "gotify://"])
def test_a_bad_url_is_refused_without_quoting_it(paths, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        notifyurls.add(paths, url)
    assert SECRET not in str(caught.value)
    assert not notifyurls.urls_path(paths).exists()


def test_removing_an_unknown_url_does_not_quote_it(paths) -> None:
    notifyurls.add(paths, "json://b.example/x")
    with pytest.raises(ConfigError) as caught:
        notifyurls.remove(paths, f"gotify://a.example/{SECRET}")
    assert SECRET not in str(caught.value)


def test_a_broken_entry_in_the_url_file_is_named_masked(paths) -> None:
    path = notifyurls.urls_path(paths)
    path.parent.mkdir(parents=True)
    path.write_text(f'[[url]]\nurl = "gotify://a.example/{SECRET}"\nevents = ["sometimes"]\n')
    with pytest.raises(ConfigError) as caught:
        notifyurls.load(paths)
    assert "entry 1" in str(caught.value) and "sometimes" in str(caught.value)
    assert SECRET not in str(caught.value)
