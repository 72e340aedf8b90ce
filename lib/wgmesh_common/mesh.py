"""Automatic mesh buildup: connect to every node without a direct link.

The race is settled by a rule, not by timing: between two nodes it is the
one with the higher ID that connects (a client of the lower-ID server).
So two nodes meshing at the same moment never both start the same link;
the serving side's per-peer reservation handles every other overlap.
"""

import ipaddress
import time
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Self

from . import abandoned, bird, join, joinclient, linkfile, log, meshview, netlink, proximity
from .errors import WgmeshError
from .netlink import Route
from .node import Node

PARALLEL_JOINS = 8


def candidates(own_id: int, reachable: set[int], linked: set[int], is_client: bool, plan,
               too_far: set[int] = frozenset()) -> list[int]:
    """Nodes this one should connect to now, lowest ID first (pure)."""
    if is_client:
        return []
    return sorted(peer for peer in reachable
                  if peer < own_id and peer not in linked and not plan.is_client(peer) and peer not in too_far)


def missing_links(own_id: int, reachable: set[int], linked: set[tuple[int, int]], ours: set[int],
                  theirs: dict[int, set[int]], is_client: bool, plan,
                  too_far: set[int] = frozenset()) -> dict[int, list[int]]:
    """Peer -> the underlay families to make a link with it over now, lowest
    ID first (pure). The mesh is per family: a peer with an IPv6 link but
    no IPv4 one gets the IPv4 one where both ends can make it.
    linked: (peer, family) of the links this node has; ours: the families
    this node may link over (its underlay, narrowed by the transport
    setting); theirs: the families a peer said it has, and a peer not
    asked yet is taken to have all of ours until it answers."""
    wanted = {}
    for peer in candidates(own_id, reachable, set(), is_client, plan, too_far):
        families = sorted(ours & theirs.get(peer, ours) - {family for linked_peer, family in linked
                                                             if linked_peer == peer})
        if families:
            wanted[peer] = families
    return wanted


def linked_peers(node: Node) -> set[int]:
    links, _ = linkfile.load_all(node.paths)
    return {link.peer_id for link in links}


def too_far(node: Node, candidates) -> set[int]:
    return proximity.excluded(node, set(candidates))


def own_link_families(node: Node) -> set[int]:
    """The families this node makes links over: its underlay, narrowed by
    the transport setting (as a join chooses them)."""
    try:
        return set(join.choose_families(node.config.transport, None, join.own_families(node), {4: "", 6: ""}))
    except WgmeshError:
        return set()


def peer_families(node: Node, peer_id: int) -> set[int]:
    """The underlay families peer_id says it has; none when it cannot say."""
    url = node.api_url_of(peer_id)
    try:
        info = joinclient.request(url, "POST", "/connectivity", {"id": node.node_id}, timeout=5)
    except WgmeshError as error:
        log.warning(f"mesh: node {peer_id} did not say its underlay families: {error}", peer=peer_id)
        return set()
    return set(join.peer_underlay(node, url, info))


@dataclass
class PassReport:
    """What one mesh pass did: the links it made, and each peer it should
    have linked with but did not, with the reason (one line each)."""
    made: list[linkfile.Link] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = [f"linked with node {link.peer_id}: {link.name}" for link in self.made]
        lines += [f"node {peer}: not linked: {reason}" for peer, reason in sorted(self.failed.items())]
        return lines or ["nothing to do: linked with every node it should be"]

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0


def stranded(plan, own_id: int, ospf_routes: list[tuple[str, str]], reachable: set[int],
             leaf_peers: dict[str, int]) -> dict[int, set[int]]:
    """Nodes OSPF routes to only over links to peers that carry no transit
    (clients, nodes that cannot forward), so the kernel has no route to
    them and no mesh pass can reach them: node -> those peers (pure).
    ospf_routes: bird's best routes as (prefix, interface) per next hop;
    leaf_peers: interface -> peer, for the links to such peers."""
    found: dict[int, set[int]] = {}
    for prefix, interface in ospf_routes:
        try:
            route = Route(ipaddress.ip_network(prefix, strict=False), None, interface, meshview.RTPROT_BIRD)
        except ValueError:
            continue
        for node_id in meshview.reachable_nodes([route], plan, own_id):
            via = leaf_peers.get(interface)
            if node_id not in reachable and via is not None and via != node_id:
                found.setdefault(node_id, set()).add(via)
    return found


def stranded_reason(plan, through: set[int]) -> str:
    """Why a node cannot be reached to be linked with (pure)."""
    names = ", ".join(f"node {peer} ({'a client' if plan.is_client(peer) else 'cannot forward'})"
                      for peer in sorted(through))
    return (f"its only route is through {names}, which carries no transit; link with it by hand: "
            f"'wgmesh connect URL TOKEN' with its join URL and a token from it")


def _ospf_routes(node: Node) -> list[tuple[str, str]]:
    try:
        return bird.BirdControl(node.paths.bird_socket, timeout=3).routes("wgmesh4")
    except (bird.BirdError, OSError):
        return []  # no bird: no routes, and nothing learnt of other nodes


def build(node: Node) -> PassReport:
    """One mesh pass: remove the halves abandoned before completing a
    handshake, connect to each candidate over each family it lacks, and
    report every node this one should link with but cannot reach.

    While its joins run, the pass looks at the routes again every
    RESCAN_INTERVAL and joins the nodes that appeared meanwhile: in a
    growing mesh new nodes show up seconds apart (as OSPF floods), and a
    node first seen while a pass was busy would otherwise wait for the next
    pass (systemd does not start a unit that is already running). It takes
    new nodes for ADMIT_WINDOW seconds only, so announcements that keep
    coming (a member forging nodes one after another) cannot keep a pass
    from ending and reporting."""
    own_id = node.node_id
    started = time.monotonic()
    reachable = set(meshview.reachable(node.plan, own_id))
    _reclaim_reservations(node)
    abandoned.sweep(node, reachable)
    ours = own_link_families(node)
    considered: set[int] = set()
    waiting = _WaitingForIPv4()
    with _Joins(node, node.api_url_of) as joins:
        while True:
            now = time.monotonic()
            if now - started < ADMIT_WINDOW:
                # One read of each table a second: the join API listens on
                # a node's IPv4 loopback, so only IPv4 routes make it joinable.
                routes = netlink.mesh_routes()
                routes4, routes6 = routes[4], routes[6]
                joinable = meshview.reachable_nodes(routes4, node.plan, own_id)
                new = set(candidates(own_id, joinable - considered, set(), node.config.is_client, node.plan))
                considered |= new
                if new:
                    joins.start(_wanted(node, new, ours))
                only6 = set(meshview.routed_nodes(routes4, routes6, node.plan, own_id)) - considered
                waiting.seen(set(candidates(own_id, only6, linked_peers(node), node.config.is_client, node.plan))
                             if only6 else set(), now)
            if not joins.running and not waiting.any(now):
                break
            joins.wait(RESCAN_INTERVAL)
    report = joins.report
    for peer in sorted(waiting.since):
        reason = "bird routes its IPv6 loopback but not yet its IPv4 one, where its join API listens"
        log.warning(f"mesh: could not connect to node {peer}: {reason}", peer=peer)
        report.failed[peer] = reason
    _report_stranded(node, set(meshview.reachable(node.plan, own_id)), report)
    return report


# How often a running pass looks for nodes that appeared since it began.
RESCAN_INTERVAL = 1.0
# How long a pass takes in new nodes (then ends with the joins it started).
ADMIT_WINDOW = 60.0
# How long a pass waits for the IPv4 route of a node routed over IPv6 only
# (OSPFv3 may be a moment ahead of OSPFv2), before it reports it not linked.
IPV4_GRACE = 10.0


class _WaitingForIPv4:
    """Nodes routed over IPv6 but not IPv4 yet: not reachable for a join,
    and not to be passed over in silence either (a pass that ended with
    "nothing to do" would tell the mesh trigger they are linked)."""

    def __init__(self):
        self.since: dict[int, float] = {}

    def seen(self, peers: set[int], now: float) -> None:
        self.since = {peer: self.since.get(peer, now) for peer in peers}

    def any(self, now: float) -> bool:
        """Whether one of them may still get its IPv4 route in time."""
        return any(now - since < IPV4_GRACE for since in self.since.values())


def _wanted(node: Node, peers: set[int], ours: set[int]) -> dict[int, list[int] | None]:
    """Peer (of peers) -> the families to join it over; None: every family
    it has (a peer with no link yet, joined as `wgmesh connect` does)."""
    links = linkfile.load_all(node.paths)[0]
    linked, is_client = {link.peer_id for link in links}, node.config.is_client
    have = {(link.peer_id, link.family) for link in links}
    wanted = missing_links(node.node_id, peers, have, ours, {}, is_client, node.plan)
    # Only the peers short of a link need a distance, so the cutoff is applied second.
    far = too_far(node, wanted) if wanted else set()
    # A peer with no link at all is joined like `wgmesh connect` does (it
    # asks the peer's families itself); one with some links is asked first,
    # so a family it lacks is never tried, nor reported, every pass.
    partly = [peer for peer in wanted if peer in linked and peer not in far]
    theirs = dict(zip(partly, _each(lambda peer: peer_families(node, peer), partly)))
    wanted = missing_links(node.node_id, peers, have, ours, theirs, is_client, node.plan, far)
    return {peer: (families if peer in linked else None) for peer, families in wanted.items()}


def _report_stranded(node: Node, reachable: set[int], report: PassReport) -> None:
    """Add the nodes OSPF knows but no pass can reach (see stranded)."""
    links = linkfile.load_all(node.paths)[0]
    leaf_peers = {link.name: link.peer_id for link in links
                  if node.plan.is_client(link.peer_id) or not link.peer_forwards}
    if not leaf_peers:
        return
    linked = {link.peer_id for link in links}
    unreachable = stranded(node.plan, node.node_id, _ospf_routes(node), reachable, leaf_peers)
    for peer in candidates(node.node_id, set(unreachable), linked, node.config.is_client, node.plan):
        reason = stranded_reason(node.plan, unreachable[peer])
        log.warning(f"mesh: cannot link with node {peer}: {reason}", peer=peer)
        report.failed[peer] = reason


class _Joins:
    """The joins of one pass, PARALLEL_JOINS at a time, collected into one
    report. A request waits mostly on the other node and on the service
    manager; requests to different peers share nothing but the allocator,
    which locks."""

    def __init__(self, node: Node, url_of):
        self.node, self.url_of = node, url_of
        self.report = PassReport()
        self.running: dict[Future, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_JOINS)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_) -> None:
        self._pool.shutdown(wait=True)
        self.wait(None)

    def start(self, wanted: dict[int, list[int] | None]) -> None:
        for peer, families in wanted.items():
            self.running[self._pool.submit(_link_with, self.node, peer, self.url_of(peer), families)] = peer

    def wait(self, timeout: float | None) -> None:
        """Until one join ends (or all, with timeout None), or timeout."""
        if not self.running:
            if timeout:
                time.sleep(timeout)
            return
        done, _ = futures.wait(self.running, timeout=timeout,
                               return_when=futures.ALL_COMPLETED if timeout is None else futures.FIRST_COMPLETED)
        for future in done:
            peer = self.running.pop(future)
            links, problem = future.result()
            self.report.made += links
            if problem:
                self.report.failed[peer] = problem


def _each(function, items: list) -> list:
    """function over every item at once, results in order. A request waits
    mostly on the other node and on the service manager, and a node joining
    a mesh of N has N-1 of them to do; requests to different peers share
    nothing but the allocator, which locks."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL_JOINS, len(items))) as pool:
        return list(pool.map(function, items))


def _reclaim_reservations(node: Node) -> None:
    """Reservations whose holder died go before the pass allocates, so a
    killed join never holds a link's name until the reservation expires."""
    node.allocator.reclaim()


def link_all(node: Node, peers, url_of=None) -> PassReport:
    """Connect to every peer at once (url_of: peer -> its join API, over
    the mesh by default). peers: a list (every family both can do), or
    peer -> the families to link over (None: every family). Whatever one
    peer does, the others are tried."""
    with _Joins(node, url_of or node.api_url_of) as joins:
        joins.start(peers if isinstance(peers, dict) else dict.fromkeys(peers))
    return joins.report


def _link_with(node: Node, peer_id: int, url: str,
               families: list[int] | None = None) -> tuple[list[linkfile.Link], str | None]:
    made, problems = [], []
    for family in families or [None]:
        try:
            made += join.connect(node, url, None, family=family)
        except join.AlreadyLinked:
            continue
        except join.ConnectIncomplete as error:
            made += error.made
            problems.append(_over(family, str(error)))
        except WgmeshError as error:
            problems.append(_over(family, str(error)))
        except Exception as error:  # noqa: BLE001
            # Whatever a hostile or broken peer makes the join raise, it costs
            # that peer's link only, never the rest of the pass.
            problems.append(_over(family, f"unexpected {type(error).__name__}: {error}"))
    if made:
        log.event("mesh-link", f"mesh: linked with node {peer_id} ({', '.join(link.name for link in made)})",
                  peer=peer_id)
    problem = "; ".join(problems) or None
    if problem:
        log.warning(f"mesh: could not connect to node {peer_id}: {problem}", peer=peer_id)
    return made, problem


def _over(family: int | None, problem: str) -> str:
    return f"IPv{family}: {problem}" if family else problem
