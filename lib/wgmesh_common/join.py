"""Both sides of a join, and of a disconnect.

Each side allocates under its own lock, generates its own private key, and
writes its own link file; only public keys, the preshared key (made by the
serving side) and link parameters cross the wire. Whatever fails, each side
removes what it reserved or wrote before reporting the error.
"""

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

from . import joinclient, keys, linkfile, log, netlink
from .errors import RemoteError, WgmeshError
from .joinapi import ConnectRequest, RequestError, signed_body
from .linkfile import Link
from .node import Node


def connectivity_info(node: Node) -> dict[str, Any]:
    """What a joining node needs to know about this one before /connect."""
    addresses = netlink.underlay_addresses()
    return {
        "id": node.node_id,
        "ipv4": node.config.public_ipv4 or addresses.get(4),
        "ipv6": node.config.public_ipv6 or addresses.get(6),
        "client": node.config.is_client,
        "mesh": mesh_parameters(node),
    }


def mesh_parameters(node: Node) -> dict[str, Any]:
    c = node.config
    return {"subnet": str(c.subnet), "node_prefix": c.node_prefix, "subnet6": str(c.subnet6),
            "vxlan_subnet": str(c.vxlan_subnet)}


def _make_link(node: Node, reservation, role: str, peer_public_key: str, offset: int, server_id: int,
               endpoint: str | None, public_key: str) -> Link:
    addresses = node.plan.link_addresses(server_id, offset)
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
    )


def _install(node: Node, link: Link, private_key: str, psk: str) -> None:
    """Write the link and start it; on failure nothing of it remains."""
    try:
        linkfile.save(node.paths, link, private_key, psk)
        node.supervisor.start_link(link.name)
    except BaseException:
        remove_local(node, link.name)
        raise
    node.allocator.release(link.name)
    try:
        node.supervisor.links_changed()
    except WgmeshError as error:
        # The link itself is fine; routing catches up on the next change.
        log.warning(f"bird was not reconfigured after adding {link.name}: {error}", link=link.name)
    log.event("link-added", f"link {link.name} to node {link.peer_id} added ({link.role})",
              link=link.name, peer=link.peer_id)


def remove_local(node: Node, name: str) -> bool:
    """Stop and delete one link on this node only."""
    try:
        node.supervisor.stop_link(name)
    except WgmeshError as error:
        log.warning(f"stopping {name}: {error}", link=name)
    existed = linkfile.delete(node.paths, name)
    node.allocator.release(name)
    # The replay high-water mark belongs to the link; a new link starts fresh.
    (node.paths.replay_dir / name).unlink(missing_ok=True)
    if existed:
        try:
            node.supervisor.links_changed()
        except WgmeshError as error:
            log.warning(f"bird was not reconfigured after removing {name}: {error}", link=name)
        log.event("link-removed", f"link {name} removed", link=name)
    return existed


# ------------------------------------------------------------ serving side

def serve_connect(node: Node, request: ConnectRequest) -> dict[str, Any]:
    from .allocation import AllocationError

    try:
        reservation = node.allocator.reserve(request.peer_id, "server", request.family)
    except AllocationError as error:
        raise RequestError(409, str(error)) from None
    try:
        private_key, public_key = keys.keypair()
        psk = keys.generate_psk()
        link = _make_link(node, reservation, "server", request.public_key, reservation.offset, node.node_id,
                          None, public_key)
        _install(node, link, private_key, psk)
    except BaseException:
        node.allocator.release(reservation.name)
        raise
    return {
        "id": node.node_id,
        "name": link.name,
        "public_key": public_key,
        "preshared_key": psk,
        "listen_port": link.listen_port,
        "offset": link.offset,
        "mtu": link.mtu,
    }


# ---------------------------------------------------------- connecting side

@dataclass(frozen=True)
class Target:
    url: str
    host: str
    family: int


def resolve_target(url: str, family: int | None) -> Target:
    parts = joinclient.parse_url(url)
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
        if family and address.version != family:
            raise WgmeshError(f"{url} is an IPv{address.version} address; it cannot carry an IPv{family} link")
        return Target(url, str(address), address.version)
    except ValueError:
        pass
    wanted = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family, socket.AF_UNSPEC)
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, wanted, socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise WgmeshError(f"cannot resolve {host!r}: {error.strerror}") from None
    address = ipaddress.ip_address(infos[0][4][0])
    return Target(url, str(address), address.version)


def check_compatible(node: Node, info: dict[str, Any], url: str) -> int:
    """The remote's ID, once it is known to be a node this one may join."""
    peer_id = info.get("id")
    if not isinstance(peer_id, int):
        raise RemoteError(f"{url} did not say its node ID: is it a wgmesh join-server?")
    if peer_id == node.node_id:
        raise WgmeshError(f"{url} is node {peer_id}, this node itself")
    ours = mesh_parameters(node)
    theirs = info.get("mesh") or {}
    for key, value in ours.items():
        if theirs.get(key) != value:
            raise WgmeshError(f"mesh settings differ: {key} is {theirs.get(key)!r} on node {peer_id} but {value!r} here")
    return peer_id


def connect(node: Node, url: str, token: str | None, family: int | None = None, link_type: str = "wireguard",
            listen_port: int | None = None) -> Link:
    node_id = node.node_id
    target = resolve_target(url, family)
    info = joinclient.request(url, "POST", "/connectivity", {"id": node_id, **({"token": token} if token else {})})
    peer_id = check_compatible(node, info, url)
    reservation = node.allocator.reserve(peer_id, "client", target.family)
    if listen_port is not None:
        reservation = _with_port(node, reservation, listen_port)
    try:
        private_key, public_key = keys.keypair()
        body = {"id": node_id, "public_key": public_key, "listen_port": reservation.listen_port,
                "family": target.family, "type": link_type}
        if token:
            body["token"] = token
        answer = joinclient.request(url, "POST", "/connect", body)
    except BaseException:
        node.allocator.release(reservation.name)
        raise
    try:
        link = _link_from_answer(node, reservation, answer, target, public_key, peer_id)
        _install(node, link, private_key, answer["preshared_key"])
    except BaseException as error:
        node.allocator.release(reservation.name)
        # The other side made its half already: ask it to drop it again.
        try:
            _signed(url, "/disconnect", {"id": node_id, "family": target.family}, answer.get("preshared_key", ""))
        except WgmeshError as undo_error:
            log.warning(f"node {peer_id} keeps a half-made link: {undo_error}", peer=peer_id)
        if isinstance(error, (KeyError, TypeError, ValueError)):
            raise RemoteError(f"{url} sent an unusable /connect answer ({error})") from None
        raise
    return link


def _with_port(node: Node, reservation, port: int):
    from dataclasses import replace

    from .allocation import AllocationError

    if not 1 <= port <= 65535:
        node.allocator.release(reservation.name)
        raise WgmeshError(f"--port {port} is out of range (1-65535)")
    links, _ = linkfile.load_all(node.paths)
    taken = {l.listen_port for l in links} | {r.listen_port for r in node.allocator.reservations() if r.name != reservation.name}
    if port in taken:
        node.allocator.release(reservation.name)
        raise AllocationError(f"port {port} is already used by another link")
    reservation = replace(reservation, listen_port=port)
    from .tomlio import write_toml

    write_toml(node.paths.reservations_dir / f"{reservation.name}.toml", reservation.to_dict())
    return reservation


def _link_from_answer(node: Node, reservation, answer: dict, target: Target, public_key: str, peer_id: int) -> Link:
    if answer.get("id") != peer_id:
        raise ValueError("the node ID changed between /connectivity and /connect")
    linkfile.check_key(answer["public_key"], "public_key")
    linkfile.check_key(answer["preshared_key"], "preshared_key")
    port = answer["listen_port"]
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"listen_port {port!r}")
    endpoint = linkfile.format_endpoint(target.host, port)
    return _make_link(node, reservation, "client", answer["public_key"], int(answer["offset"]), peer_id,
                      endpoint, public_key)


def _signed(url: str, path: str, fields: dict[str, Any], psk: str, method: str = "POST") -> dict[str, Any]:
    return joinclient.request(url, method, path, signed_body(fields), psk=psk)


# --------------------------------------------------------------- disconnect

def peer_api_urls(node: Node, link: Link) -> list[str]:
    """Where the other side's join API may answer: over the mesh first, then
    (for a link this node made) at the underlay address it was joined at."""
    urls = [node.api_url_of(link.peer_id)]
    if link.role == "client" and link.endpoint:
        host, _ = linkfile.parse_endpoint(link.endpoint)
        urls.append(f"http://{linkfile.format_endpoint(host, node.config.api_port)}")
    return urls


def disconnect(node: Node, name: str, force: bool = False) -> None:
    if not linkfile.exists(node.paths, name):
        raise WgmeshError(f"there is no link named {name!r} (see 'wgmesh status')")
    link = linkfile.load(node.paths, name)
    psk = linkfile.read_secret(node.paths.link_psk(name))
    errors = []
    for url in peer_api_urls(node, link):
        try:
            _signed(url, "/disconnect", {"id": node.node_id, "family": link.family}, psk)
            break
        except RemoteError as error:
            errors.append(str(error))
            # A 4xx answer is a real answer: the other side knows no such link.
            if "refused /disconnect (404)" in str(error):
                break
    else:
        if not force:
            raise WgmeshError(f"node {link.peer_id} could not be told: {errors[-1]}; use --force to remove this side only")
        log.warning(f"removing {name} on this side only: {errors[-1]}", link=name, peer=link.peer_id)
    remove_local(node, name)


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
