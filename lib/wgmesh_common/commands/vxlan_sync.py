"""wgmesh-vxlan-sync: keep the VXLAN forwarding entries equal to the routes.

A long-running Type=notify service that sleeps on netlink route events (a
route appearing or going away is exactly when entries must change), so a
change is applied within a fraction of a second and nothing runs when
nothing changes. A full resync also runs every RESYNC seconds, and the
systemd watchdog is fed from the same loop, so a stuck loop gets restarted.
"""

import os
import select
import time

import click

from .. import log, netlink, servicemanager, vxlan
from .common import load_node

RESYNC = 30.0
DEBOUNCE = 0.2


def _apply(config) -> None:
    # The mesh's routing rules were added when the node came up; something
    # may have flushed them since (systemd-networkd drops the rules it does
    # not know when it starts): put them back, or bird's next run moves the
    # routes back to `main`.
    try:
        netlink.ensure_rules()
    except Exception as error:  # noqa: BLE001 - the overlay matters more than the rules
        log.warning(f"could not restore the mesh's routing rules: {error}")
    for device, (added, removed) in vxlan.reconcile(config).items():
        for dst in sorted(added):
            log.event("vxlan-add", f"{device}: forwarding to {dst}", device=device, vtep=dst)
        for dst in sorted(removed):
            log.event("vxlan-remove", f"{device}: no longer forwarding to {dst}", device=device, vtep=dst)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--once", is_flag=True, help="Reconcile once and exit.")
@click.option("--remove", is_flag=True, help="Remove the overlay devices and exit.")
def main(once: bool, remove: bool) -> None:
    """Maintain the VXLAN overlay's forwarding entries from the routing table."""
    if remove:
        vxlan.remove_devices()
        return
    node = load_node()
    log.configure(daemon=True)
    if once:
        _apply(node.config)
        return
    # pyroute2 only for the daemon (see netlink's docstring).
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE

    watchdog = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
    tick = min(RESYNC, watchdog / 3) if watchdog else RESYNC
    with IPRoute() as events:
        events.bind(groups=RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        _apply(node.config)
        servicemanager.notify("READY=1")
        last_full = time.monotonic()
        while True:
            ready, _, _ = select.select([events.fileno()], [], [], tick)
            if ready:
                # A route change rarely comes alone (OSPF installs many at
                # once): drain the burst, then apply once.
                deadline = time.monotonic() + DEBOUNCE
                while True:
                    events.get()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not select.select([events.fileno()], [], [], remaining)[0]:
                        break
            if ready or time.monotonic() - last_full >= RESYNC:
                _apply(node.config)
                last_full = time.monotonic()
            servicemanager.notify("WATCHDOG=1")
