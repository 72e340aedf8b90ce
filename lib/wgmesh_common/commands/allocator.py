"""wgmesh-allocator: reserve and release link resources under the lock."""

import click

from .. import linkfile, tomlio
from ..errors import WgmeshError
from .common import load_node


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Reserve or release a link's interface name, addresses and port."""


@main.command("reserve")
@click.option("--peer", "peer_id", type=int, required=True, help="The other node's ID.")
@click.option("--role", type=click.Choice(linkfile.ROLES), required=True,
              help="listener: this node answers the join and hands out the link's addresses; "
                   "dialer: it asks.")
@click.option("--family", type=click.Choice(["4", "6"]), default="4", show_default=True, help="Underlay family.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
def reserve(peer_id: int, role: str, family: str, as_json: bool) -> None:
    """Reserve resources for a link and print the reservation."""
    node = load_node()
    problem = node.plan.node_id_problem(peer_id)
    if problem:
        raise WgmeshError(f"--peer {problem}")
    if peer_id == node.node_id:
        raise WgmeshError(f"--peer {peer_id} is this node's own ID")
    # This process ends at once: no holder, so only expiry frees it.
    reservation = node.allocator.reserve(peer_id, role, int(family), hold=False)
    data = reservation.to_dict()
    if reservation.offset is not None:
        addresses = node.plan.link_addresses(node.node_id, reservation.offset)
        data.update(listener4=str(addresses.listener4), dialer4=str(addresses.dialer4),
                    listener6=str(addresses.listener6), dialer6=str(addresses.dialer6))
    tomlio.emit(data, "json" if as_json else "toml")


@main.command("release")
@click.argument("name")
def release(name: str) -> None:
    """Drop the reservation NAME."""
    if not load_node().allocator.discard(name):
        raise WgmeshError(f"no reservation named {name!r}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
def list_reservations(as_json: bool) -> None:
    """Print the live reservations."""
    reservations = load_node().allocator.reservations()
    tomlio.emit({"reservation": [r.to_dict() for r in reservations]}, "json" if as_json else "toml")
