"""wgmesh token: the join tokens."""

import re
import time

import click

from ...errors import WgmeshError
from ...tokens import TokenStore
from ..common import load_node

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}



def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '12h', '7d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match or int(match.group(1)) == 0:
        raise WgmeshError(f"bad duration {text!r}: use a positive number with s, m, h or d, like 15m")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]



@click.command("token")
@click.option("--new", "make_new", is_flag=True, help="Make an additional token.")
@click.option("--expires", metavar="DURATION", help="With --new: lifetime, like 30m, 12h or 7d.")
@click.option("--uses", type=int, metavar="N", help="With --new: how many joins it allows.")
@click.option("--revoke", metavar="TOKEN", help="Revoke a token.")
@click.option("--list", "list_all", is_flag=True, help="List every token with its limits.")
def token_command(make_new: bool, expires: str | None, uses: int | None, revoke: str | None, list_all: bool) -> None:
    """Print this node's join token (or make, list, revoke tokens)."""
    node = load_node()
    store = TokenStore(node.paths.tokens_file)
    if sum(bool(x) for x in (make_new, revoke, list_all)) > 1:
        raise click.UsageError("use only one of --new, --revoke and --list")
    if (expires or uses is not None) and not make_new:
        raise click.UsageError("--expires and --uses go with --new")
    if revoke:
        if not store.revoke(revoke):
            raise WgmeshError("no such token")
        click.echo("token revoked")
    elif make_new:
        token = store.create(parse_duration(expires) if expires else None, uses)
        click.echo(token.value)
    elif list_all:
        now = time.time()
        for token in store.load():
            expiry = "never" if token.expires is None else (
                "expired" if token.expires <= now else f"in {int(token.expires - now)} s")
            uses_left = "unlimited" if token.uses_left is None else str(token.uses_left)
            kind = "default" if token.default else "extra"
            click.echo(f"{token.value}  {kind}  expires {expiry}  uses left {uses_left}")
    else:
        click.echo(store.default_token())
