"""wgmesh notify: the push notification URLs."""

import time

import click

from ... import notification, notifysend, notifyurls
from ...errors import ConfigError, WgmeshError
from ...notification import Message
from ...paths import default_paths


def _kinds(text: str | None) -> tuple[str, ...]:
    if text is None:
        return notification.DEFAULT_KINDS
    return notifyurls.check_kinds([k.strip() for k in text.split(",") if k.strip()])



@click.group("notify", context_settings={"help_option_names": ["-h", "--help"]})
def notify_command() -> None:
    """Push notifications through apprise URLs (gotify://HOST/TOKEN, ...).
    URLs hold credentials: they are kept 0600 and shown masked."""



@notify_command.command("add")
@click.argument("url")
@click.option("--events", default=None, metavar="KIND,...",
              help=f"What this URL gets: some of {', '.join(notification.KINDS)} (default: all).")
def add_command(url: str, events: str | None) -> None:
    """Send notifications to URL (or change which events it gets)."""
    kinds = _kinds(events)
    notifyurls.check_url(url)
    known = notifysend.known_url(url)
    if known is False:
        raise ConfigError(f"apprise cannot send to {notifyurls.mask(url)}: unknown scheme or malformed URL")
    new = notifyurls.add(default_paths(), url, kinds)
    click.echo(f"{'added' if new else 'updated'} {notifyurls.mask(url)} ({', '.join(kinds)})")
    if known is None:
        click.echo("warning: apprise is not installed; nothing is sent until it is (apt install apprise)", err=True)



@notify_command.command("remove")
@click.argument("url")
def remove_command(url: str) -> None:
    """Stop sending to URL (the URL itself, or its number in `list`)."""
    gone = notifyurls.remove(default_paths(), url)
    click.echo(f"removed {notifyurls.mask(gone.url)}")



@notify_command.command("list")
def list_command() -> None:
    """The URLs, masked, with the events each gets."""
    for number, target in enumerate(notifyurls.load(default_paths()), 1):
        click.echo(f"{number}  {notifyurls.mask(target.url)}  {','.join(target.kinds)}")



@notify_command.command("test")
def test_command() -> None:
    """Send one test message to each URL and print what each server said."""
    targets = notifyurls.load(default_paths())
    if not targets:
        raise ConfigError("no notification URLs: add one with 'wgmesh notify add URL'")
    if notifysend.apprise_module() is None:
        raise WgmeshError("apprise is not installed (apt install apprise)")
    message = Message(id=f"test-{time.time():.0f}", peer=-1, kinds=(), priority="low", notify_type="info",
                      title="wgmesh: test notification", body="wgmesh notify test: this URL works.")
    failures = 0
    for number, target in enumerate(targets, 1):
        accepted = notifysend.send(target.url, message)
        failures += not accepted
        click.echo(f"{number}  {notifyurls.mask(target.url)}  {'sent' if accepted else 'FAILED'}")
    if failures:
        raise WgmeshError(f"{failures} of {len(targets)} URL(s) failed")
