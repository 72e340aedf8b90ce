"""wgmesh-vxlan-sync: keep the VXLAN forwarding entries equal to the routes.

A long-running Type=notify service that sleeps on netlink route events (a
route appearing or going away is exactly when entries must change), so a
change is applied within a fraction of a second and nothing runs when
nothing changes. A full resync also runs every RESYNC seconds, and the
systemd watchdog is fed from the same loop, so a stuck loop gets restarted.

It is also the first to see a new node in the routes, so it starts the
mesh pass that links this node with it (meshtrigger: debounced, one pass
for a burst; wgmesh-mesh.timer is only the safety net).
"""

import os
import select
import time

import click

from .. import log, meshview, netlink, servicemanager, vxlan
from ..addressing import MeshPlan
from ..errors import WgmeshError
from ..meshtrigger import MeshTrigger
from .common import load_node

RESYNC = 30.0
DEBOUNCE = 0.2


def _apply(config, full: bool = True) -> frozenset[int]:
    """One round: the mesh's routing rules, the overlay's entries from the
    routes; the nodes in the routes. A full round (at start and every
    RESYNC) also gives the overlay devices their settings and addresses
    again; the other rounds, which route changes start in bursts, make a
    device again only if it is missing or down."""
    _restore_rules()
    routes = netlink.mesh_routes()
    with netlink.session():
        changes = vxlan.reconcile(config, routes, ensure_devices=full)
    for device, (added, removed) in changes.items():
        for dst in sorted(added):
            log.event("vxlan-add", f"{device}: forwarding to {dst}", device=device, vtep=dst)
        for dst in sorted(removed):
            log.event("vxlan-remove", f"{device}: no longer forwarding to {dst}", device=device, vtep=dst)
    plan, own = MeshPlan.from_config(config), config.require_id()
    return frozenset(meshview.reachable_nodes(routes[4], plan, own)
                     | meshview.reachable_nodes(routes[6], plan, own, family=6))


def _restore_rules() -> None:
    # The mesh's routing rules were added when the node came up; something
    # may have flushed them since (systemd-networkd drops the rules it does
    # not know when it starts): put them back, or bird's next run moves the
    # routes back to `main`.
    try:
        netlink.ensure_rules()
    except Exception as error:  # noqa: BLE001 - the overlay matters more than the rules
        log.warning(f"could not restore the mesh's routing rules: {error}")


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
    watchdog = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
    tick = min(RESYNC, watchdog / 3) if watchdog else RESYNC
    # A client is not meshed: it has no pass to start.
    trigger = None if node.config.is_client else MeshTrigger()
    with netlink.route_events() as events:
        routed = _apply(node.config)
        servicemanager.notify("READY=1")
        last_full = time.monotonic()
        while True:
            if trigger is not None:
                trigger = _maybe_start_pass(node, trigger.seen(routed, time.monotonic()), routed)
            wait = trigger.wait(time.monotonic(), tick) if trigger is not None else tick
            ready, _, _ = select.select([events], [], [], wait)
            if ready:
                # A route change rarely comes alone (OSPF installs many at
                # once): drain the burst, then apply once.
                deadline = time.monotonic() + DEBOUNCE
                while True:
                    netlink.drain_events(events)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not select.select([events], [], [], remaining)[0]:
                        break
            full = time.monotonic() - last_full >= RESYNC
            if ready or full:
                routed = _apply(node.config, full)
                if full:
                    last_full = time.monotonic()
            servicemanager.notify("WATCHDOG=1")


def _maybe_start_pass(node, trigger: MeshTrigger, routed: frozenset[int]) -> MeshTrigger:
    now = time.monotonic()
    try:
        if trigger.check_due(now):
            trigger = trigger.finished(node.supervisor.mesh_pass_succeeded(), now)
            if trigger.failures and trigger.handed is None and trigger.due is not None:
                log.info(f"the mesh pass failed; another in {trigger.due - now:.0f} s")
        if not trigger.is_due(now):
            return trigger
        if not node.supervisor.start_mesh_pass():
            return trigger.busy(now)
    except WgmeshError as error:
        log.warning(f"could not start a mesh pass for a new node: {error}")
        return trigger.busy(now)
    log.event("mesh-pass-started", f"new nodes in the routes: started a mesh pass ({len(routed)} nodes routed)",
              nodes=len(routed))
    return trigger.started(routed, now)
