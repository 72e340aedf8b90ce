"""Turning the link files (and, later, measured costs) into bird's config.

apply() is what wgmesh-cost-writer runs: render, write only when the text
changed, and ask bird to reconfigure. OSPF applies cost changes in place on
`configure`, so this never resets an adjacency.
"""

import ipaddress

from . import bird, linkfile, log
from .addressing import LINK_PREFIX4, LINK_PREFIX6, MeshPlan
from .config import NodeConfig
from .paths import Paths
from .tomlio import file_lock, write_atomic


def base_interfaces(config: NodeConfig, links: list[linkfile.Link]) -> list[bird.OspfInterface]:
    plan = MeshPlan.from_config(config)
    return [
        bird.OspfInterface(
            link.name,
            bird.link_cost(config.base_cost, plan.is_client(link.peer_id), config.is_client),
            *client_destinations(plan, link),
        )
        for link in links
    ]


def client_destinations(plan: MeshPlan, link: linkfile.Link) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a link may be routed to: everything for a link between two
    servers; for a link to a client, the client's own block and the link's
    own net (as IPv4 and IPv6 prefixes)."""
    if not plan.is_client(link.peer_id):
        return (), ()
    net4 = ipaddress.ip_interface(f"{link.local4}/{LINK_PREFIX4}").network
    net6 = ipaddress.ip_interface(f"{link.local6}/{LINK_PREFIX6}").network
    return ((str(plan.node_block(link.peer_id)), str(net4)),
            (str(plan.node_block6(link.peer_id)), str(net6)))


def render_config(config: NodeConfig, interfaces: list[bird.OspfInterface]) -> str:
    return bird.render(
        MeshPlan.from_config(config),
        config.require_id(),
        interfaces,
        hello=config.ospf_hello,
        dead=config.ospf_dead,
        stub_router=config.is_client,
    )


def apply(paths: Paths, config: NodeConfig, interfaces: list[bird.OspfInterface] | None = None) -> bool:
    """Write bird.conf if it changed and reconfigure a running bird.
    Returns whether anything changed."""
    # Serialised: two joins finishing at once must not let the one that read
    # the link files first write its older view last.
    with file_lock(paths.run_dir / "routing.lock"):
        return _apply(paths, config, interfaces)


def _apply(paths: Paths, config: NodeConfig, interfaces: list[bird.OspfInterface] | None) -> bool:
    if interfaces is None:
        links, problems = linkfile.load_all(paths)
        for problem in problems:
            log.warning(f"skipping a link file: {problem}")
        interfaces = base_interfaces(config, links)
    text = render_config(config, interfaces)
    target = paths.bird_config
    if target.exists() and target.read_text() == text:
        return False
    write_atomic(target, text.encode())
    control = bird.BirdControl(paths.bird_socket)
    if control.alive():
        control.configure()
        log.event("bird-reconfigured", "bird reconfigured", interfaces=len(interfaces))
    return True
