"""Both sides of a join, and of a disconnect.

Each side allocates under its own lock, generates its own private key, and
writes its own link file; only public keys and link parameters cross the
wire. Each side derives the link's preshared key from the two key pairs
(linkkeys), so no secret is ever sent. Whatever fails, each side
removes what it reserved or wrote before reporting the error.
"""

import ipaddress
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import (
    established,
    forwarding,
    joinapi,
    joinclient,
    keys,
    linkfile,
    linkkeys,
    linkops,
    log,
    meshview,
    netlink,
    pins,
    status,
)
from .allocation import AllocationError, Reservation
from .errors import ConfigError, RemoteError, WgmeshError
from .fieldtypes import has_type
from .joinapi import ConnectAnswer, ConnectRequest, RequestError, signed_body
from .linkfile import Link
from .node import Node
from .tomlio import write_atomic


def connectivity_info(node: Node) -> dict[str, Any]:
    """What a joining node needs to know about this one before /connect."""
    addresses = netlink.underlay_addresses()
    return {
        "id": node.node_id,
        "ipv4": node.config.public_ipv4 or addresses.get(4),
        "ipv6": node.config.public_ipv6 or addresses.get(6),
        "client": node.config.is_client,
        # False where /proc/sys is read-only: peers then route its links
        # like a client's. Absent from older nodes: read as true.
        "forwarding": forwarding.forwards(node.paths) and not node.config.is_client,
        "mesh": mesh_parameters(node),
    }


def mesh_parameters(node: Node) -> dict[str, Any]:
    c = node.config
    return {"subnet": str(c.subnet), "node_prefix": c.node_prefix, "subnet6": str(c.subnet6),
            "vxlan_subnet": str(c.vxlan_subnet)}


def _make_link(node: Node, reservation, role: str, peer_public_key: str, offset: int, listener_id: int,
               endpoint: str | None, public_key: str, peer_forwards: bool = True) -> Link:
    addresses = node.plan.link_addresses(listener_id, offset)
    return Link(
        name=reservation.name,
        peer_id=reservation.peer_id,
        role=role,
        family=reservation.family,
        listen_port=reservation.listen_port,
        public_key=public_key,
        peer_public_key=peer_public_key,
        offset=offset,
        local4=str(addresses.local4(role)),
        peer4=str(addresses.peer4(role)),
        local6=str(addresses.local6(role)),
        peer6=str(addresses.peer6(role)),
        endpoint=endpoint,
        mtu=node.config.mtu,
        keepalive=node.config.keepalive,
        peer_forwards=peer_forwards,
    )


# Where the recovery tests kill a join, as a power cut or an OOM kill would:
# the process SIGKILLs itself on reaching the point named in this variable.
# This ships and runs in the root join helper too, so one stray setting must
# not kill every join: the hook also wants TEST_HOOKS_VARIABLE=1 beside it.
KILL_POINT_VARIABLE = "WGMESH_TEST_KILL_AT"
TEST_HOOKS_VARIABLE = "WGMESH_TEST_HOOKS"


def kill_point_environment(name: str) -> dict[str, str]:
    """The environment that makes a process die at kill_point(name)."""
    return {KILL_POINT_VARIABLE: name, TEST_HOOKS_VARIABLE: "1"}


def kill_point(name: str) -> None:
    if os.environ.get(TEST_HOOKS_VARIABLE) == "1" and os.environ.get(KILL_POINT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _install(node: Node, reservation: Reservation, link: Link, private_key: str, psk: str) -> None:
    """Write the link and start it, then release its reservation; on failure
    nothing of the link remains (the caller releases the reservation)."""
    try:
        linkfile.save(node.paths, link, private_key, psk)
        kill_point("written")
        node.supervisor.start_link(link.name)
        kill_point("started")
    except BaseException:
        remove_local(node, link.name)
        raise
    node.allocator.release(reservation)
    try:
        node.supervisor.links_changed()
    except WgmeshError as error:
        # The link itself is fine; routing catches up on the next change.
        log.warning(f"bird was not reconfigured after adding {link.name}: {error}", link=link.name)
    log.event("link-added", f"link {link.name} to node {link.peer_id} added ({link.role})",
              link=link.name, peer=link.peer_id)


def remove_local(node: Node, name: str) -> bool:
    """Stop and delete one link on this node only. It takes no allocator
    lock and touches no reservation (a reservation is its holder's), so
    the abandoned-half step may call it under the allocator's lock."""
    try:
        node.supervisor.stop_link(name)
    except WgmeshError as error:
        log.warning(f"stopping {name}: {error}", link=name)
    existed = linkfile.delete(node.paths, name)
    # A pin belongs to the link: a new link of the same name starts measured.
    try:
        pins.set_pin(node.paths, name, None)
    except (ConfigError, OSError) as error:
        log.warning(f"{error}; the pin of {name} stays (it applies to no other peer)", link=name)
    # The replay high-water mark and the proof of traffic belong to the
    # link; a new link starts fresh.
    (node.paths.replay_dir / name).unlink(missing_ok=True)
    established.forget(node.paths, name)
    linkops.forget(node.paths, name)
    if existed:
        try:
            node.supervisor.links_changed()
        except WgmeshError as error:
            log.warning(f"bird was not reconfigured after removing {name}: {error}", link=name)
        log.event("link-removed", f"link {name} removed", link=name)
    return existed


# ------------------------------------------------------------ serving side

CONCURRENT_JOIN_WAIT = 15.0


def _host(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        found = ipaddress.ip_address(address)
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    if found.version == 6 and found.ipv4_mapped:
        return found.ipv4_mapped
    return found


def comes_from_elsewhere(source: str, live_endpoints: set[str]) -> bool:
    """True when source is not where the live links of a peer come from, in
    its own address family (pure). Without a live link of that family there
    is nothing to compare with, and the request is taken as the peer's."""
    host = _host(source)
    if host is None:
        return False
    known = {h for h in map(_host, live_endpoints) if h is not None and h.version == host.version}
    return bool(known) and host not in known


def _live_endpoints(node: Node, links: list[Link]) -> set[str]:
    now = time.time()
    found = set()
    for link in links:
        device = linkops.device_status(node.paths, node.config, link.name)
        for peer in device.peers if device else []:
            if peer.endpoint and now - peer.last_handshake < status.HANDSHAKE_FRESH:
                found.add(linkfile.parse_endpoint(peer.endpoint)[0])
    return found


def current_endpoint_hosts(node: Node, link: Link) -> set[str]:
    """Where the link's peer is on the underlay now: the endpoint its
    WireGuard packets come from, and the one this side dials."""
    device = linkops.device_status(node.paths, node.config, link.name)
    endpoints = [peer.endpoint for peer in (device.peers if device else []) if peer.endpoint]
    if link.endpoint:
        endpoints.append(link.endpoint)
    return {str(host) for host in (_host(linkfile.parse_endpoint(e)[0]) for e in endpoints) if host is not None}


def check_collision(node: Node, peer_id: int, source: str) -> None:
    """Refuse an ID that another node already uses in this mesh (the seed's
    "Collision"). A request from the node's own mesh address, or from where
    this node's live links with it come from, is that node itself."""
    if meshview.node_of_address(node.plan, source) == peer_id:
        return
    linked = [link for link in linkfile.load_all(node.paths)[0] if link.peer_id == peer_id]
    if linked:
        if comes_from_elsewhere(source, _live_endpoints(node, linked)):
            raise RequestError(409, f"ID {peer_id} is already used by another node of this mesh (collision, "
                                    f"linked with this node from another address): pick a free ID (see 'wgmesh used')")
        return
    if peer_id in meshview.reachable(node.plan, node.node_id):
        raise RequestError(409, f"ID {peer_id} is already used by another node of this mesh (collision): "
                                f"pick a free ID (see 'wgmesh used')")


def _reserve_serving(node: Node, peer_id: int, family: int):
    """Reserve the listener's end, settling a join that crosses one of ours.

    When this node is connecting to peer_id at the same moment peer_id
    connects here, the lower ID listens: the higher-ID side refuses at once,
    which makes the lower-ID side's own attempt fail and free the name, so
    the lower-ID side then waits for that and listens. Exactly one link."""
    name = linkfile.link_name(peer_id, family)
    deadline = time.monotonic() + CONCURRENT_JOIN_WAIT
    while True:
        try:
            return node.allocator.reserve(peer_id, linkfile.LISTENER, family)
        except AllocationError as error:
            ours = [r for r in node.allocator.reservations() if r.name == name and r.role == linkfile.DIALER]
            if not ours or linkfile.exists(node.paths, name):
                raise RequestError(409, str(error)) from None
            if node.node_id > peer_id:
                raise RequestError(409, f"this node is joining node {peer_id} itself right now; "
                                        f"the lower ID ({peer_id}) listens") from None
            if time.monotonic() > deadline:
                raise RequestError(409, str(error)) from None
            time.sleep(0.1)


def has_carried_traffic(node: Node, link: Link) -> bool:
    """True once the link completed a handshake: now (the device says so)
    or ever (the prober saw an answer over it; that survives restarts)."""
    if established.is_established(node.paths, link.name, link.public_key):
        return True
    device = linkops.device_status(node.paths, node.config, link.name)
    return any(peer.last_handshake > 0 for peer in (device.peers if device else []))


def _signing_keys(node: Node, links: list[Link]):
    """(link, its signing key) for each link whose key can be read."""
    for link in links:
        try:
            yield link, link_signing_key(node, link)
        except (WgmeshError, OSError):
            continue


def proving_link(node: Node, links: list[Link], raw: bytes, claimed: str | None) -> Link | None:
    """The link whose key signed this /connect, if any: its sender holds the
    private key of a link this node already has with it."""
    if not claimed:
        return None
    return next((link for link, key in _signing_keys(node, links)
                 if linkkeys.signature_matches(key, "POST", "/connect", raw, claimed)), None)


def check_claim(node: Node, request: ConnectRequest, raw: bytes = b"", claimed: str | None = None) -> None:
    """Whether this /connect may have a link to request.peer_id over its
    family, and make room for it.

    Once any link with that node (either family) has carried traffic, the
    request must be signed with the key of a link this node has with it
    (with a fresh timestamp): otherwise a token holder could claim a node's
    ID over the other family, or take over a link whose peer is offline for
    a while. A half of the requested family is then replaced: with that
    proof, or freely when it never completed a handshake (an interrupted
    join recovers so)."""
    links = [link for link in linkfile.load_all(node.paths)[0] if link.peer_id == request.peer_id]
    if not links:
        return
    prover = proving_link(node, links, raw, claimed)
    if prover is not None:
        if request.timestamp is None:
            raise RequestError(400, "a signed /connect needs a 'timestamp'")
        check_replay(node, prover.name, request.timestamp)
    elif any(has_carried_traffic(node, link) for link in links):
        names = ", ".join(link.name for link in links)
        raise RequestError(409, f"this node's links with node {request.peer_id} ({names}) have carried traffic: a "
                                f"new one must be signed with one of their keys (or run 'wgmesh disconnect NAME "
                                f"--force' on this node first)")
    name = linkfile.link_name(request.peer_id, request.family)
    same = next((link for link in links if link.name == name), None)
    if same is None:
        return
    reason = "it proved it holds a link's key" if prover else "its side never completed a handshake"
    remove_local(node, name)
    log.event("link-replaced", f"link {name}: node {request.peer_id} asks for it anew and {reason}; replacing it",
              link=name, peer=request.peer_id)


_replay_lock = threading.Lock()


def check_replay(node: Node, name: str, timestamp: float) -> None:
    """Accept each link's signed timestamps only in increasing order."""
    marker = node.paths.replay_dir / name
    with _replay_lock:
        try:
            last = float(marker.read_text())
        except (OSError, ValueError):
            last = None
        joinapi.check_fresh(timestamp, last)
        write_atomic(marker, f"{timestamp!r}\n".encode(), 0o600)


def serve_connect(node: Node, request: ConnectRequest, source: str = "", raw: bytes = b"",
                  signature: str | None = None) -> ConnectAnswer:
    if request.family not in own_families(node):
        raise RequestError(400, f"this node has no IPv{request.family} underlay address to serve a link on")
    if node.plan.is_client(node.node_id):
        raise RequestError(403, "this node is a client: it connects to servers, nothing connects to it")
    check_collision(node, request.peer_id, source)
    check_claim(node, request, raw, signature)
    reservation = _reserve_serving(node, request.peer_id, request.family)
    try:
        private_key, public_key = keys.keypair()
        try:
            psk = linkkeys.preshared_key(private_key, request.public_key)
        except WgmeshError as error:
            raise RequestError(400, str(error)) from None
        link = _make_link(node, reservation, linkfile.LISTENER, request.public_key, reservation.offset, node.node_id,
                          None, public_key, peer_forwards=request.forwards)
        _install(node, reservation, link, private_key, psk)
    except BaseException:
        node.allocator.release(reservation)
        raise
    return ConnectAnswer(peer_id=node.node_id, public_key=public_key, listen_port=link.listen_port,
                         offset=link.offset, name=link.name, mtu=link.mtu)


# ---------------------------------------------------------- connecting side

def own_families(node: Node) -> set[int]:
    """Underlay families this node can make links over."""
    families = set(netlink.underlay_addresses())
    if node.config.public_ipv4:
        families.add(4)
    if node.config.public_ipv6:
        families.add(6)
    return families


def choose_families(setting: str, requested: int | None, ours: set[int], theirs: dict[int, str]) -> list[int]:
    """The families to make links over (pure). An explicit request wins;
    otherwise every family both ends have, narrowed by the transport setting."""
    if requested:
        if requested not in theirs:
            raise WgmeshError(f"the other node has no IPv{requested} underlay address")
        return [requested]
    wanted = {4, 6} if setting == "auto" else {int(setting)}
    families = sorted(wanted & set(theirs) & ours)
    if not families:
        raise WgmeshError(
            f"no underlay family in common (this node: {', '.join(f'IPv{f}' for f in sorted(ours)) or 'none'}; "
            f"the other: {', '.join(f'IPv{f}' for f in sorted(theirs)) or 'none'}; transport setting: {setting})")
    return families


def peer_underlay(node: Node, url: str, info: dict[str, Any]) -> dict[int, str]:
    """Where the other node's WireGuard ports are, per family. An IP literal
    in the URL (outside the mesh) is what the operator knows works, e.g. a
    NAT's public address, so it beats what the node says of itself."""
    addresses: dict[int, str] = {}
    for family, key in ((4, "ipv4"), (6, "ipv6")):
        value = info.get(key)
        if isinstance(value, str):
            try:
                if ipaddress.ip_address(value).version == family:
                    addresses[family] = value
            except ValueError:
                pass
    host = joinclient.parse_url(url).hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal and literal not in node.plan.subnet and literal not in node.plan.subnet6:
        addresses[literal.version] = str(literal)
    return addresses


def is_own_address(host: str) -> bool:
    """True for an IP literal of this node's (one the kernel delivers to lo).
    127.0.0.0/8 and ::1 are left to the server's own-ID check: they may be a
    tunnel or port forward to another machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_loopback and netlink.route_interface(host) == "lo"


def check_compatible(node: Node, info: dict[str, Any], url: str) -> int:
    """The remote's ID, once it is known to be a node this one may join."""
    peer_id = info.get("id")
    if not has_type(peer_id, int):
        raise RemoteError(f"{url} did not say its node ID: is it a wgmesh join-server?")
    if peer_id == node.node_id:
        raise WgmeshError(f"{url} is node {peer_id}, this node itself")
    ours = mesh_parameters(node)
    theirs = info.get("mesh") if isinstance(info.get("mesh"), dict) else {}
    for key, value in ours.items():
        if theirs.get(key) != value:
            raise WgmeshError(f"mesh settings differ: {key} is {theirs.get(key)!r} on node {peer_id} but {value!r} here")
    return peer_id


def connect(node: Node, url: str, token: str | None, family: int | None = None, link_type: str = "wireguard",
            listen_port: int | None = None) -> list[Link]:
    """Join the node at url: one link per chosen family. Links that already
    exist are kept; returns the links made now."""
    node_id = node.node_id
    host = joinclient.parse_url(url).hostname
    if is_own_address(host):
        raise WgmeshError(f"{url} is this node itself: give the URL of another node")
    info = joinclient.request(url, "POST", "/connectivity", {"id": node_id, **({"token": token} if token else {})})
    peer_id = check_compatible(node, info, url)
    if node.plan.is_client(peer_id) and not node.config.is_client:
        # Clients are joined by, never joined to: they carry no transit.
        raise WgmeshError(f"node {peer_id} is a client; clients connect to servers, not the other way round")
    underlay = peer_underlay(node, url, info)
    families = choose_families(node.config.transport, family, own_families(node) | ({family} if family else set()),
                               underlay)
    if listen_port is not None and len(families) > 1:
        raise WgmeshError("--port needs a single transport family (add --transport 4 or 6)")
    # Only a literal false counts: an older node says nothing, and anything
    # else from the wire is no reason to route around a node.
    forwards = info.get("forwarding") is not False
    # A join of this node's that was killed half-way left a reservation
    # nobody holds: it must not stand in the way of this one.
    node.allocator.reclaim()

    def one_family(fam: int) -> Link | WgmeshError | None:
        name = linkfile.link_name(peer_id, fam)
        # Another join making this link right now (a mesh pass, a second
        # connect) is let finish: what it leaves decides what is left to do.
        node.allocator.wait_released(name, BUSY_WAIT)
        state = family_state(node, name, {r.name for r in node.allocator.reservations()})
        return _make_family(node, url, token, peer_id, fam, underlay[fam], link_type, listen_port, forwards,
                            family_action(state), name)

    outcomes = _each_family(families, one_family)
    made = [outcome for outcome in outcomes.values() if isinstance(outcome, Link)]
    errors = [f"IPv{fam}: {outcome}" if len(families) > 1 else str(outcome)
              for fam, outcome in outcomes.items() if isinstance(outcome, WgmeshError)]
    if errors:
        raise ConnectIncomplete("; ".join(errors), made) if made else WgmeshError("; ".join(errors))
    if not made:
        raise AlreadyLinked(f"this node already has every link to node {peer_id}")
    return made


def _each_family(families: list[int], make) -> dict[int, Link | WgmeshError | None]:
    """make(family) for each family in turn, an error being that family's
    outcome (so a link made for the other is still reported). In turn, not
    at once: the second family's /connect is signed with the first one's new
    link, and bench_convergence measured a peer's two links made at once
    slower to settle (two adjacencies with one neighbour coming up together
    stall in OSPF's Loading state: 5 nodes settled 20 s after the last
    connect against 12 s)."""
    outcomes: dict[int, Link | WgmeshError | None] = {}
    for family in families:
        try:
            outcomes[family] = make(family)
        except WgmeshError as error:
            outcomes[family] = error
        except Exception as error:  # noqa: BLE001
            outcomes[family] = WgmeshError(f"unexpected {type(error).__name__}: {error}")
    return outcomes


# How long a connect waits for another join of the same link to end: that
# join's two requests at most.
BUSY_WAIT = joinclient.TIMEOUT + joinclient.CONNECT_TIMEOUT


class AlreadyLinked(WgmeshError):
    """Every family asked for has its link, made and running: nothing to do
    (a connect is told so, and has succeeded)."""


class ConnectIncomplete(WgmeshError):
    """A family asked for was not made while another was: the message says
    which failed and why; `made` holds the links that were made."""

    def __init__(self, message: str, made: list[Link]):
        super().__init__(message)
        self.made = made


@dataclass(frozen=True)
class FamilyState:
    """What this node has of its link to a peer over one family."""
    has_file: bool
    running: bool  # the interface exists and is up
    established: bool  # it completed a handshake once
    reserved: bool  # a live reservation: a join is making it right now


def family_action(state: FamilyState) -> str:
    """What a connect does about one family (pure):
    keep  - the link file and its running interface agree;
    busy  - another join is making it right now (its holder lives);
    start - a link that worked is only not running: start it;
    redo  - files of a join that never completed (killed between writing
            them and starting, or never handshook): remove both halves
            and join again;
    join  - nothing of it: join."""
    if state.reserved:
        return "busy"
    if not state.has_file:
        return "join"
    if state.running:
        return "keep"
    return "start" if state.established else "redo"


def family_state(node: Node, name: str, reserved: set[str]) -> FamilyState:
    has_file = linkfile.exists(node.paths, name)
    return FamilyState(has_file=has_file, running=has_file and netlink.interface_is_up(name),
                       established=has_file and established.is_established(node.paths, name,
                                                                            _public_key_of(node, name)),
                       reserved=name in reserved)


def _public_key_of(node: Node, name: str) -> str | None:
    try:
        return linkfile.load(node.paths, name).public_key
    except (WgmeshError, OSError):
        return None


def _make_family(node: Node, url: str, token: str | None, peer_id: int, family: int, host: str, link_type: str,
                 listen_port: int | None, forwards: bool, action: str, name: str) -> Link | None:
    """Carry out family_action's decision; the link made or started, None when kept."""
    if action == "keep":
        return None
    if action == "busy":
        raise WgmeshError(f"another join has been making {name} for over {BUSY_WAIT:.0f} s (its reservation is "
                          f"held by a running process); try again once it ends")
    if action == "start":
        node.supervisor.start_link(name)
        log.event("link-started", f"link {name} to node {peer_id} had files but was not running: started",
                  link=name, peer=peer_id)
        return linkfile.load(node.paths, name)
    proof = _remove_half_link(node, name) if action == "redo" else None
    return _connect_family(node, url, token, peer_id, family, host, link_type, listen_port, forwards, proof)


def _remove_half_link(node: Node, name: str) -> bytes | None:
    """Remove this side of a link that never ran; its signing key, for the
    /connect that replaces the other side's half (check_claim: the proof
    lets it replace even a half that saw a handshake). Not a /disconnect:
    the other side removes its half only after answering, and would then
    remove the new half of the same name."""
    try:
        key = link_signing_key(node, linkfile.load(node.paths, name))
    except (WgmeshError, OSError):
        key = None
    remove_local(node, name)
    log.event("link-redone", f"link {name} had files but never ran: removed, joining again", link=name)
    return key


def _connect_family(node: Node, url: str, token: str | None, peer_id: int, family: int, host: str,
                    link_type: str, listen_port: int | None, peer_forwards: bool = True,
                    proof: bytes | None = None) -> Link:
    node_id = node.node_id
    reservation = node.allocator.reserve(peer_id, linkfile.DIALER, family, port=listen_port)
    kill_point("reserved")
    try:
        private_key, public_key = keys.keypair()
        body = {"id": node_id, "public_key": public_key, "listen_port": reservation.listen_port,
                "family": family, "type": link_type}
        if token:
            body["token"] = token
        if not forwarding.forwards(node.paths) and not node.config.is_client:
            # Sent only when false, so a forwarding node's request is one
            # that older servers accept too.
            body["forwarding"] = False
        proof = proof or _existing_link_key(node, peer_id)
        if proof is not None:
            # Once a link with the other node carried traffic, it takes a new
            # one only from who holds that link's key (see check_claim).
            body["timestamp"] = round(time.time(), 6)
        document = joinclient.request(url, "POST", "/connect", body, signing_key=proof,
                                      timeout=joinclient.CONNECT_TIMEOUT)
    except BaseException:
        node.allocator.release(reservation)
        raise
    kill_point("answered")
    try:
        link = _link_from_answer(node, reservation, ConnectAnswer.from_wire(document), host, public_key,
                                 peer_forwards)
        _install(node, reservation, link, private_key, linkkeys.preshared_key(private_key, link.peer_public_key))
    except BaseException as error:
        node.allocator.release(reservation)
        # The other side made its half already: ask it to drop it again.
        try:
            peer_key = document.get("public_key")
            signed_request(url, "/disconnect", {"id": node_id, "family": family},
                    linkkeys.signing_key(private_key, peer_key if isinstance(peer_key, str) else ""))
        except WgmeshError as undo_error:
            log.warning(f"node {peer_id} keeps a half-made link: {undo_error}", peer=peer_id)
        if isinstance(error, (KeyError, TypeError, ValueError)):
            raise RemoteError(f"{url} sent an unusable /connect answer ({error})") from None
        raise
    return link


def _existing_link_key(node: Node, peer_id: int) -> bytes | None:
    """The signing key of a link this node already has with peer_id."""
    links = [link for link in linkfile.load_all(node.paths)[0] if link.peer_id == peer_id]
    return next((key for _, key in _signing_keys(node, links)), None)


def _link_from_answer(node: Node, reservation, answer: ConnectAnswer, host: str, public_key: str,
                      peer_forwards: bool = True) -> Link:
    if answer.peer_id != reservation.peer_id:
        raise joinapi.UnusableAnswer("the node ID changed between /connectivity and /connect")
    endpoint = linkfile.format_endpoint(host, answer.listen_port)
    return _make_link(node, reservation, linkfile.DIALER, answer.public_key,
                      answer.offset, answer.peer_id, endpoint, public_key, peer_forwards)


def signed_request(url: str, path: str, fields: dict[str, Any], signing_key: bytes,
                   method: str = "POST") -> dict[str, Any]:
    return joinclient.request(url, method, path, signed_body(fields), signing_key=signing_key)


def link_signing_key(node: Node, link: Link) -> bytes:
    return linkkeys.signing_key(linkfile.read_secret(node.paths.link_key(link.name)), link.peer_public_key)


# --------------------------------------------------------------- disconnect

def peer_api_urls(node: Node, link: Link) -> list[str]:
    """Where the other side's join API may answer: over the mesh first, then
    (for a link this node made) at the underlay address it was joined at."""
    urls = [node.api_url_of(link.peer_id)]
    if link.role == linkfile.DIALER and link.endpoint:
        host, _ = linkfile.parse_endpoint(link.endpoint)
        urls.append(f"http://{linkfile.format_endpoint(host, node.config.api_port)}")
    return urls


def disconnect(node: Node, name: str, force: bool = False) -> None:
    if not linkfile.exists(node.paths, name):
        raise WgmeshError(f"there is no link named {name!r} (see 'wgmesh status')")
    link = linkfile.load(node.paths, name)
    problem = tell_disconnect(node, link, link_signing_key(node, link), peer_api_urls(node, link))
    if problem:
        if not force:
            raise WgmeshError(f"node {link.peer_id} could not be told: {problem}; use --force to remove this side only")
        log.warning(f"removing {name} on this side only: {problem}", link=name, peer=link.peer_id)
    remove_local(node, name)


def tell_disconnect(node: Node, link: Link, key: bytes, urls: list[str]) -> str | None:
    """Ask the other side to remove its half of link (signed with key, so
    only the half of this very link can go); None once it answered, else
    why it could not be told."""
    errors = []
    for url in urls:
        try:
            signed_request(url, "/disconnect", {"id": node.node_id, "family": link.family}, key)
            return None
        except RemoteError as error:
            # 404 is a real answer: the other side has no such link any more.
            if error.status == 404:
                return None
            errors.append(str(error))
    return errors[-1] if errors else "no address to reach it at"
