"""wgmesh-link: realise one link file as an interface, or remove it.

Under wgmesh-link@NAME.service (NOTIFY_SOCKET set) `up` tells systemd it is
ready and, with wireguard-go, hands it wireguard-go's PID as the service's
main process, so systemd supervises (and restarts) the daemon itself.
"""

import os

import click

from .. import linkops, servicemanager, supervisor
from .common import load_node


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Bring one link's interface up or down."""


@main.command("up")
@click.argument("name")
def up(name: str) -> None:
    """Create and configure the interface of link NAME."""
    node = load_node()
    if os.environ.get("NOTIFY_SOCKET"):
        linkops.bring_up_supervised(node.paths, node.config, name, servicemanager.notify)
    else:
        linkops.bring_up(node.paths, node.config, name)


@main.command("reload")
@click.argument("name")
def reload(name: str) -> None:
    """Apply link NAME's file to its running interface (keys, endpoint,
    MTU, keepalive) without restarting it: ExecReload of wgmesh-link@NAME."""
    node = load_node()
    linkops.reload(node.paths, node.config, name)


@main.group("loopback")
def loopback() -> None:
    """The node's own addresses on lo (10.0.N.1/30 and its IPv6 twin), the
    policy rules that look up the mesh's routing table and the firewall
    that keeps the underlay out of the mesh (nftables table inet wgmesh)."""


@loopback.command("up")
def loopback_up() -> None:
    """Add the node's addresses to lo, its routing rules and its firewall,
    and switch forwarding on (where the node may: otherwise one warning,
    and it works as a leaf)."""
    node = load_node()
    supervisor.ensure_loopback(node.paths, node.config)


@loopback.command("down")
def loopback_down() -> None:
    """Remove the node's addresses from lo, its routing rules and its firewall."""
    node = load_node()
    supervisor.remove_loopback(node.paths, node.config)


@main.command("down")
@click.argument("name")
def down(name: str) -> None:
    """Remove the interface of link NAME (the link file stays)."""
    node = load_node()
    linkops.take_down(node.paths, name)
