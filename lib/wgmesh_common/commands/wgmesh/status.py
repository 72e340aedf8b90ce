"""wgmesh status: this node's links, routes and problems."""

import json

import click

from ... import forwarding, meshview, overlaps, status
from ..common import load_node


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_command(as_json: bool) -> None:
    """Show this node's links: peer, endpoint, state, last handshake, OSPF."""
    node = load_node()
    rows, problems = status.gather(node)
    routed = meshview.reachable(node.plan, node.node_id)
    cannot_forward = forwarding.problem(node.paths)
    host_overlaps = overlaps.host_overlaps(node.plan, node.node_id)
    overlay_problem = node.plan.overlay_problem(node.node_id)
    if overlay_problem:
        problems = [*problems, overlay_problem]
    if as_json:
        click.echo(json.dumps({"node": node.node_id, "forwarding": cannot_forward is None,
                               "forwarding_problem": cannot_forward, "links": status.as_dicts(rows),
                               "reachable": [{"id": i, "via": via} for i, via in routed.items()],
                               "problems": problems, "overlaps": host_overlaps}, indent=2))
        return
    plan = node.plan
    click.echo(f"node {node.node_id}  {plan.loopback4(node.node_id)}  {plan.loopback6(node.node_id)}")
    click.echo(status.table(rows) if rows else "no links")
    if routed:
        click.echo("routes to: " + ", ".join(f"node {i} via {via}" for i, via in routed.items()))
    else:
        click.echo("routes to: no other node yet")
    for line in status.forwarding_lines(cannot_forward, rows):
        click.echo(line)
    for problem in problems + host_overlaps:
        click.echo(f"warning: {problem}", err=True)
