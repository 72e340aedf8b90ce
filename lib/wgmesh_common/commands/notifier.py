"""wgmesh-notifier: journal events about peers -> push notifications.

A long-running Type=notify service. Every POLL seconds it asks bird for
the OSPF neighbours and logs peer-down / peer-up (an OSPF neighbour dies
after ospf.dead seconds, 4 by default, where the prober needs two 10 s
rounds); it follows the journal for those and the other WGMESH_EVENT
entries about peers, coalesces them per peer and delivers the messages
through apprise, one outbox per URL (see notifystate for the guarantees).
"""

import os
import re
import time

import click

from .. import bird, linkfile, log, notification, notifysend, notifystate, notifyurls, probe, servicemanager
from ..errors import ConfigError, WgmeshError
from .common import load_node

POLL = 2.0
_BIRD_STARTED = re.compile(r"Last reboot on (.+)")


def _figures(paths, links: list[str]) -> dict:
    """The last probe round's RTT and loss over the first of these links
    that has one: the figures of a peer-down / peer-up message."""
    for name in links:
        result = probe.read_result(paths, name)
        if result is not None:
            return {"rtt": result.rtt_avg, "loss": result.loss}
    return {}


class Notifier:
    def __init__(self, node, send=notifysend.send):
        self.node = node
        self.paths = node.paths
        self.config = node.config
        self.send = send
        self.state = notifystate.load(self.paths)
        self.targets: list[notifyurls.Target] = []
        self.apprise_missing_said = False
        self.bird_said = False

    def load_targets(self) -> None:
        try:
            self.targets = notifyurls.load(self.paths)
        except ConfigError as error:
            log.warning(f"{error}; sending no notifications until it is fixed")
            self.targets = []
        self.state = notifystate.keep_outboxes(self.state, [t.url for t in self.targets])

    # ---------------------------------------------------------- bird

    def poll_bird(self) -> None:
        control = bird.BirdControl(self.paths.bird_socket, timeout=3)
        try:
            status = control.command("show status")[1]
            rows = control.ospf_neighbors("wgmesh4")
        except (bird.BirdError, OSError) as error:
            # bird down is not every peer down: wait for it to answer.
            if not self.bird_said:
                log.warning(f"cannot read OSPF neighbours: {error}")
                self.bird_said = True
            return
        self.bird_said = False
        match = _BIRD_STARTED.search(status)
        started = match.group(1).strip() if match else None
        self.observe_neighbours(rows, started, time.time())

    def observe_neighbours(self, rows: list[dict], bird_started: str | None, now: float) -> None:
        """Log a peer-down / peer-up for each change since the last view.
        After bird restarted (or the node rebooted) the last view says
        nothing about now: the new one is only a baseline."""
        links, _ = linkfile.load_all(self.paths)
        link_peers = {link.name: link.peer_id for link in links}
        before = self.state["neighbours"] if self.state["bird_started"] == bird_started else {}
        after = notification.neighbour_view(rows, link_peers, before)
        for kind, peer, names in notification.peer_changes(before, after, link_peers):
            figures = _figures(self.paths, names)
            if kind == "down":
                log.event("peer-down", f"node {peer} is down: no OSPF neighbour on {', '.join(names)}", "warning",
                          peer=peer, links=",".join(names), since=f"{now:.3f}", **figures)
            else:
                log.event("peer-up", f"node {peer} is up again: OSPF neighbour on {', '.join(names)}", "notice",
                          peer=peer, links=",".join(names), since=f"{now:.3f}", **figures)
        if after != self.state["neighbours"] or bird_started != self.state["bird_started"]:
            self.state = {**self.state, "neighbours": after, "bird_started": bird_started}
            notifystate.save(self.paths, self.state)

    # ---------------------------------------------------------- journal

    def take_entries(self, entries: list[tuple[dict, float, str]]) -> None:
        """Journal entries (fields, time, cursor) into the coalescing
        windows; the cursor moves past them in the same save."""
        if not entries:
            return
        windows = self.state["windows"]
        for fields, when, _ in entries:
            event = notification.event_from_journal(fields, when)
            if event is not None:
                windows = notification.coalesce_add(windows, event, self.config.notify_coalesce_window)
        self.state = {**self.state, "windows": windows, "cursor": entries[-1][2]}
        notifystate.save(self.paths, self.state)

    def close_windows(self, now: float) -> None:
        """Messages now due go into the outboxes of the URLs that want them."""
        windows, batches = notification.coalesce_due(self.state["windows"], now, self.config.notify_coalesce_window)
        if windows == self.state["windows"] and not batches:
            return
        outboxes = dict(self.state["outboxes"])
        for batch in batches:
            for target in self.targets:
                message = notification.message_for(self.node.node_id, batch, target.kinds)
                if message is not None:
                    key = notifystate.url_key(target.url)
                    outboxes[key] = notifystate.enqueue(outboxes[key], message, self.config.notify_outbox_limit)
        self.state = {**self.state, "windows": windows, "outboxes": outboxes}
        notifystate.save(self.paths, self.state)

    # ---------------------------------------------------------- delivery

    def deliver(self, now: float) -> None:
        """One attempt per URL with a message due; a message leaves its
        outbox only in the save after the server accepted it."""
        for target in self.targets:
            key = notifystate.url_key(target.url)
            outbox = self.state["outboxes"][key]
            message = notifystate.due(outbox, now, self.config.notify_outbox_limit)
            if message is None:
                continue
            try:
                accepted = self.send(target.url, message)
            except ImportError:
                if not self.apprise_missing_said:
                    log.error(f"apprise is not installed: {len(self.targets)} notification URL(s) configured, "
                              "nothing can be sent until the apprise package is (messages wait)")
                    self.apprise_missing_said = True
                return
            if accepted:
                outbox = notifystate.delivered(outbox, message)
                log.info(f"sent \"{message.title}\" to {notifyurls.mask(target.url)}")
            else:
                outbox = notifystate.failed(outbox, now, maximum=self.config.notify_retry_max)
                log.warning(f"notification to {notifyurls.mask(target.url)} failed (attempt {outbox['attempts']}); "
                            f"retrying in {outbox['next_try'] - now:.0f} s")
            self.state = {**self.state, "outboxes": {**self.state["outboxes"], key: outbox}}
            notifystate.save(self.paths, self.state)


def _open_journal(cursor: str | None):
    # Here, so a node without python3-systemd gets main's clear error.
    from systemd import journal

    reader = journal.Reader(flags=journal.LOCAL_ONLY)
    reader.add_match(*notification.journal_matches())
    if cursor:
        try:
            reader.seek_cursor(cursor)
            # seek_cursor lands on the saved entry itself (when it is
            # still there): it was taken before the restart.
            entry = reader.get_next()
            if entry and entry.get("__CURSOR") != cursor:
                reader.get_previous()
            return reader
        except (OSError, ValueError):
            log.warning("the saved journal position is gone; notifying from now on")
    reader.seek_tail()
    reader.get_previous()
    return reader


def _read_entries(reader) -> list[tuple[dict, float, str]]:
    entries = []
    for entry in reader:
        stamp = entry.get("__REALTIME_TIMESTAMP")
        when = stamp.timestamp() if stamp is not None else time.time()
        entries.append((entry, when, entry["__CURSOR"]))
    return entries


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Send push notifications (apprise) about this node's peers: down,
    back, degraded, recovered, joined, left."""
    node = load_node()
    log.configure(daemon=True)
    notifysend.silence_apprise()
    notifier = Notifier(node)
    notifier.load_targets()
    if notifier.targets and notifysend.apprise_module() is None:
        log.error(f"apprise is not installed: {len(notifier.targets)} notification URL(s) configured, "
                  "nothing can be sent until the apprise package is (messages wait)")
        notifier.apprise_missing_said = True
    try:
        reader = _open_journal(notifier.state["cursor"])
    except ImportError:
        raise WgmeshError("python3-systemd is not installed: the notifier cannot read the journal") from None
    watchdog = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
    servicemanager.notify("READY=1")
    next_poll = 0.0
    urls_mtime = None
    while True:
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + POLL
            notifier.poll_bird()
            # `wgmesh notify add/remove` take effect without a restart.
            try:
                mtime = notifyurls.urls_path(notifier.paths).stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != urls_mtime:
                urls_mtime = mtime
                notifier.load_targets()
        notifier.take_entries(_read_entries(reader))
        notifier.close_windows(time.time())
        notifier.deliver(time.time())
        servicemanager.notify("WATCHDOG=1")
        wait = max(0.1, next_poll - time.monotonic())
        due = notification.next_due(notifier.state["windows"])
        if due is not None:
            wait = min(wait, max(0.1, due - time.time()))
        if watchdog:
            wait = min(wait, watchdog / 3)
        reader.wait(wait)
