"""Turning the link files and their measured costs into bird's config.

recost() is what wgmesh-cost-writer runs: decide every link's cost from its
probe window (quality.decide), remember the decisions, render, write only
when the text changed, and ask bird to reconfigure. apply() renders with
the costs last published, for the commands that add or remove links. OSPF
applies cost changes in place on `configure`, so neither ever resets an
adjacency. Both end in configure_bird, the one function that reconfigures
bird.
"""

import ipaddress
import time
from dataclasses import dataclass

from . import bird, coststate, counters, forwarding, linkfile, log, netlink, pins, probe, quality
from .addressing import LINK_PREFIX4, LINK_PREFIX6, MeshPlan
from .config import NodeConfig
from .errors import ConfigError
from .paths import Paths
from .tomlio import file_lock, remove, write_atomic


def base_interfaces(config: NodeConfig, links: list[linkfile.Link],
                    costs: dict[str, int] | None = None, forwards: bool = True) -> list[bird.OspfInterface]:
    """bird's interfaces: each link at its published cost (costs), or at
    its base cost until one is published. forwards: whether this node can."""
    plan = MeshPlan.from_config(config)
    costs = costs or {}
    return [
        bird.OspfInterface(
            link.name,
            costs.get(link.name) or bird.link_cost(config.base_cost, is_client_link(plan, config, link, forwards),
                                                   False),
            *client_destinations(plan, link),
            *link_nets(link),
        )
        for link in links
    ]


def link_nets(link: linkfile.Link) -> tuple[str, str]:
    """The link's own /31 and /127."""
    return (str(ipaddress.ip_interface(f"{link.local4}/{LINK_PREFIX4}").network),
            str(ipaddress.ip_interface(f"{link.local6}/{LINK_PREFIX6}").network))


def is_client_link(plan: MeshPlan, config: NodeConfig, link: linkfile.Link, forwards: bool = True) -> bool:
    """A link that carries no transit, and costs a client's: one end is a
    client or cannot forward (forwards: whether this node can)."""
    return plan.is_client(link.peer_id) or config.is_client or not link.peer_forwards or not forwards


def client_destinations(plan: MeshPlan, link: linkfile.Link) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a link may be routed to: everything for a link between two
    servers; for a link to a client or to a node that cannot forward, that
    node's own block and the link's own net (as IPv4 and IPv6 prefixes)."""
    if not plan.is_client(link.peer_id) and link.peer_forwards:
        return (), ()
    net4, net6 = link_nets(link)
    return ((str(plan.node_block(link.peer_id)), net4), (str(plan.node_block6(link.peer_id)), net6))


def render_config(config: NodeConfig, interfaces: list[bird.OspfInterface],
                  kernel_table: int = netlink.MAIN_TABLE, forwards: bool = True,
                  holds_loopback: bool = True) -> str:
    return bird.render(
        MeshPlan.from_config(config),
        config.require_id(),
        interfaces,
        hello=config.ospf_hello,
        dead=config.ospf_dead,
        # A node that cannot forward says so in OSPF too, so that even the
        # peers that linked with it before it lost forwarding (and so do not
        # know) route through it only as a last resort (OSPFv2) or never (v3).
        stub_router=config.is_client or not forwards,
        kernel_table=kernel_table,
        announce_loopback=holds_loopback,
    )


def holds_loopback(config: NodeConfig) -> bool:
    """Whether lo has the node's IPv4 loopback (wgmesh-node.service put it
    there and takes it away when it stops)."""
    own = MeshPlan.from_config(config).loopback4(config.require_id())
    return any(ipaddress.ip_interface(cidr).ip == own for cidr in netlink.addresses_of("lo"))


def apply(paths: Paths, config: NodeConfig, interfaces: list[bird.OspfInterface] | None = None) -> bool:
    """Write bird.conf if it changed and reconfigure a running bird.
    Returns whether anything changed."""
    # Serialised: two joins finishing at once must not let the one that read
    # the link files first write its older view last.
    with file_lock(paths.routing_lock):
        return _apply(paths, config, interfaces)


def _apply(paths: Paths, config: NodeConfig, interfaces: list[bird.OspfInterface] | None) -> bool:
    if interfaces is None:
        links, problems = linkfile.load_all(paths)
        for problem in problems:
            log.warning(f"skipping a link file: {problem}")
        interfaces = base_interfaces(config, links, known_costs(paths, config, links), forwarding.forwards(paths))
    return configure_bird(paths, config, interfaces)


def known_costs(paths: Paths, config: NodeConfig, links: list[linkfile.Link]) -> dict[str, int]:
    """The published costs; for a link with none yet (after a reboot, or a
    new link) its pin, so pinned links never start at the base cost."""
    costs = coststate.published_costs(paths)
    pinned, _ = pins.pinned_costs(paths, links)
    plan = MeshPlan.from_config(config)
    forwards = forwarding.forwards(paths)
    for link in links:
        if link.name not in costs and link.name in pinned:
            costs[link.name] = quality.pinned_cost(pinned[link.name], is_client_link(plan, config, link, forwards))
    return costs


def configure_bird(paths: Paths, config: NodeConfig, interfaces: list[bird.OspfInterface]) -> bool:
    """Render bird's config, write it if it changed, and `configure` a
    running bird: the only way wgmesh reconfigures bird (apply, recost, and
    so the cost-writer, wgmesh-bird.service's reload and the supervisors'
    links_changed all end here). Call it under routing.lock."""
    text = render_config(config, interfaces, netlink.mesh_table(), forwarding.forwards(paths),
                         holds_loopback(config))
    target = paths.bird_config
    # Set while a written config may not have reached bird yet: a failed
    # or interrupted configure is retried by the next run, whose text is
    # the same.
    pending = paths.bird_pending
    if target.exists() and target.read_text() == text and not pending.exists():
        return False
    write_atomic(pending, b"")
    write_atomic(target, text.encode())
    control = bird.BirdControl(paths.bird_socket)
    if control.alive():
        control.configure()
        log.event("bird-reconfigured", "bird reconfigured", interfaces=len(interfaces))
        counters.add(paths, bird_reconfigurations=1)
    # A bird that is not running reads the file when it starts.
    remove(pending)
    return True


@dataclass(frozen=True)
class LinkDecision:
    link: linkfile.Link
    decision: quality.Decision


def read_window(paths: Paths, link: linkfile.Link, known: bool) -> list[quality.Round]:
    """A link's probe window; [] with a warning when its file is bad, or
    missing for a link that was measured before (a new link has none yet)."""
    try:
        found = probe.read(paths, link.name)
    except ConfigError as error:
        log.warning(f"{error}; {link.name} keeps its published cost", link=link.name)
        return []
    if found is None:
        if known:
            log.warning(f"no probe file for {link.name}; it keeps its published cost", link=link.name)
        return []
    if found.peer != link.peer_id:
        return []  # a window of an older link of the same name
    return list(found.rounds)


def decide_all(paths: Paths, config: NodeConfig, links: list[linkfile.Link],
               windows: dict[str, list[quality.Round]] | None = None,
               now: float | None = None) -> list[LinkDecision]:
    """Every link's decision, from the probe files (or the given windows),
    the remembered states and the pins."""
    now = time.time() if now is None else now
    plan = MeshPlan.from_config(config)
    states, problem = coststate.read_states(paths)
    if problem:
        log.warning(f"{problem}; starting every link's cost state afresh")
    pinned, problem = pins.pinned_costs(paths, links)
    if problem:
        log.warning(f"{problem}; ignoring the pins until it is fixed")
    forwards = forwarding.forwards(paths)
    if windows is None:
        windows = {link.name: read_window(paths, link, link.name in states) for link in links}
    # Every link's rounds at once: jitter they all show is the host's; each
    # peer counts once, whatever its number of links (quality.py).
    host = quality.host_jitter((link.peer_id, windows.get(link.name, [])) for link in links)
    decisions = []
    for link in links:
        client = is_client_link(plan, config, link, forwards)
        previous = states.get(link.name) or quality.initial_state(config.base_cost, client)
        window = windows.get(link.name, [])
        decision = quality.decide(window, previous, pinned.get(link.name), config.quality, config.base_cost,
                                  client, now, host)
        if decision.warning and link.name in states and window:
            # Rounds there, but none fresh: the prober has stopped.
            log.warning(f"{link.name}: {decision.warning}", link=link.name)
        decisions.append(LinkDecision(link, decision))
    return decisions


def recost(paths: Paths, config: NodeConfig, windows: dict[str, list[quality.Round]] | None = None,
           now: float | None = None) -> list[LinkDecision]:
    """One cost-writer pass: decide, log the events, remember, and
    reconfigure bird if a published cost (or the set of links) changed.
    The events go first: after a crash an event may be logged twice, but
    never lost."""
    with file_lock(paths.routing_lock):
        links, problems = linkfile.load_all(paths)
        for problem in problems:
            log.warning(f"skipping a link file: {problem}")
        decisions = decide_all(paths, config, links, windows, now)
        for item in decisions:
            log_events(item.link, item.decision)
        changes = sum(event.name == "cost-change" for item in decisions for event in item.decision.events)
        if changes:
            counters.add(paths, cost_changes=changes)
        coststate.save(paths, {item.link.name: item.decision.state for item in decisions})
        costs = {item.link.name: item.decision.cost for item in decisions}
        configure_bird(paths, config, base_interfaces(config, links, costs, forwarding.forwards(paths)))
    return decisions


def log_events(link: linkfile.Link, decision: quality.Decision) -> None:
    for event in decision.events:
        figures = event.fields
        if event.name == "cost-change":
            message = (f"{link.name} (node {link.peer_id}) cost {figures['old']} -> {figures['new']}: "
                       f"{figures['reason']}{describe(figures)}")
            level = "notice"
        elif event.name == "link-degraded":
            message = f"{link.name} (node {link.peer_id}) degraded: {figures['reason']}{describe(figures)}"
            level = "warning"
        else:
            message = f"{link.name} (node {link.peer_id}) recovered{describe(figures)}"
            level = "notice"
        log.event(event.name, message, level, link=link.name, peer=link.peer_id, **figures)


def describe(figures: dict) -> str:
    parts = []
    if figures.get("rtt") is not None:
        parts.append(f"rtt {figures['rtt']:g} ms")
    if figures.get("loss") is not None:
        parts.append(f"loss {figures['loss']:g} %")
    if figures.get("jitter") is not None:
        parts.append(f"jitter {figures['jitter']:g} ms")
    if figures.get("host_jitter") is not None:
        parts.append(f"host jitter {figures['host_jitter']:g} ms")
    if figures.get("link_jitter") is not None:
        parts.append(f"jitter above host {figures['link_jitter']:g} ms")
    return f" ({', '.join(parts)})" if parts else ""
