"""wgmesh graph: the mesh as a DOT graph."""

import shutil

import click

from ... import bird, graph, meshview, process, status
from ...errors import WgmeshError
from ..common import load_node


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
