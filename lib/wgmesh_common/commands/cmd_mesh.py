"""wgmesh mesh / used / clean / proximity / graph: the mesh as a whole."""

import shutil
import sys

import click

from .. import bird, graph, join, linkfile, mesh, meshview, netlink, probe, process, proximity, status
from .. import config as node_config
from ..errors import WgmeshError
from .common import load_node


@click.command("mesh")
def mesh_command() -> None:
    """Connect to every node this one routes to but has no link with.
    One line per link made and per node it could not link with (then the
    exit status is 1)."""
    with netlink.session():
        report = mesh.build(load_node())
    for line in report.lines():
        click.echo(line)
    if report.exit_status:
        sys.exit(report.exit_status)


@click.command("used")
def used_command() -> None:
    """List the node IDs in use in the mesh (as this node sees it)."""
    node = load_node()
    ids = {node.node_id}
    ids |= set(meshview.reachable(node.plan, node.node_id))
    ids |= mesh.linked_peers(node)
    for node_id in sorted(ids):
        kind = "client" if node.plan.is_client(node_id) else "node"
        me = "  (this node)" if node_id == node.node_id else ""
        click.echo(f"{node_id}\t{kind}\t{node.plan.loopback4(node_id)}{me}")


def _answers(address: str | None) -> bool:
    if not address:
        return False
    samples = probe.sample_rtts(address, 3, 0.2, 1.0)
    return any(s is not None for s in samples)


@click.command("clean")
@click.option("--yes", is_flag=True, help="Remove without asking.")
def clean_command(yes: bool) -> None:
    """Remove links whose peer answers neither through the link nor at its
    underlay address."""
    node = load_node()
    links, _ = linkfile.load_all(node.paths)
    dead = []
    for link in links:
        if _answers(link.peer4):
            continue
        endpoint = link.endpoint
        if not endpoint:
            device = status.linkops.device_status(node.paths, node.config, link.name)
            endpoint = device.peers[0].endpoint if device and device.peers else None
        host = linkfile.parse_endpoint(endpoint)[0] if endpoint else None
        if not _answers(host):
            dead.append(link)
    if not dead:
        click.echo("every link's peer answers")
        return
    for link in dead:
        click.echo(f"{link.name}: node {link.peer_id} answers neither at {link.peer4} nor at its endpoint")
    if not yes:
        if not sys.stdin.isatty():
            raise WgmeshError("not removing without --yes (no terminal to ask on)")
        click.confirm(f"remove {len(dead)} link(s)?", abort=True)
    for link in dead:
        join.disconnect(node, link.name, force=True)
        click.echo(f"removed {link.name}")


@click.command("proximity")
@click.argument("cutoff", type=int, required=False)
def proximity_command(cutoff: int | None) -> None:
    """List nodes by underlay latency; with CUTOFF (ms) keep no links to
    nodes farther than that (0 removes the limit)."""
    node = load_node()
    distances = proximity.measure(node)
    proximity.save(node, distances)
    for d in distances:
        rtt = f"{d.rtt:.1f} ms" if d.rtt is not None else "no answer"
        click.echo(f"{d.peer_id}\t{d.address or '-'}\t{rtt}")
    if cutoff is None:
        return
    if cutoff < 0:
        raise WgmeshError("CUTOFF must be 0 (no limit) or a positive number of milliseconds")
    node_config.write_settings(node.paths.config_file, {("node", "proximity_cutoff"): cutoff})
    far = proximity.beyond({d.peer_id: d for d in distances}, cutoff)
    links, _ = linkfile.load_all(node.paths)
    for link in links:
        if link.peer_id in far:
            join.disconnect(node, link.name, force=True)
            click.echo(f"removed {link.name}: node {link.peer_id} is beyond {cutoff} ms")
    # A wider limit may let nodes be linked that were not: a pass now, not
    # at the mesh timer's next tick (a safety net of 30 s).
    if not node.config.is_client:
        node.supervisor.start_mesh_pass()


@click.command("graph")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Where to write: '-' for DOT on stdout; FILE.svg renders SVG with graphviz; else DOT.")
def graph_command(output: str) -> None:
    """Draw the mesh: nodes, links, OSPF costs, and this node's links that are down."""
    node = load_node()
    control = bird.BirdControl(node.paths.bird_socket)
    _, text = control.command("show ospf state wgmesh4")
    mesh_graph = graph.parse_ospf_state(text)
    own = str(node.plan.loopback4(node.node_id))
    mesh_graph.nodes.setdefault(own, {})
    rows, _ = status.gather(node)
    down = [str(node.plan.loopback4(r.peer)) for r in rows if r.ospf != "Full"]
    graph.add_down_links(mesh_graph, own, down)
    for row in rows:
        condition = "down" if "down" in row.penalties else "penalised" if row.penalties else "ok"
        graph.add_measurement(mesh_graph, str(node.plan.loopback4(row.peer)), row.rtt, condition)
    labels, clients = {}, set()
    for router in mesh_graph.nodes:
        node_id = meshview.node_of_address(node.plan, router)
        if node_id is not None:
            labels[router] = f"node {node_id}\\n{router}"
            if node.plan.is_client(node_id):
                clients.add(router)
    dot = graph.to_dot(mesh_graph, labels, clients, own)
    if output == "-":
        click.echo(dot, nl=False)
    elif output.endswith(".svg"):
        if not shutil.which("dot"):
            raise WgmeshError("SVG needs graphviz ('apt install graphviz'); use -o FILE.dot for DOT")
        result = process.run(["dot", "-Tsvg", "-o", output], input=dot, text=True, capture_output=True)
        if result.returncode:
            raise WgmeshError(f"graphviz failed: {result.stderr.strip()}")
        click.echo(f"wrote {output}")
    else:
        with open(output, "w") as handle:
            handle.write(dot)
        click.echo(f"wrote {output}")
