"""wgmesh init: make this machine a mesh node."""

import click

from ... import config as node_config
from ... import forwarding, log, migrations, overlaps
from ...addressing import MeshPlan
from ...errors import WgmeshError
from ...node import Node
from ...paths import default_paths
from ...tokens import TokenStore
from ...tomlio import remove, write_atomic


def _check_and_warn(plan: MeshPlan, node_id: int) -> None:
    """Refuse an ID the plan cannot place; warn, up front and without
    refusing, about what will make the node less than a full member."""
    # An overlay address that is not an ordinary host address only warns on
    # an installed node (so its config keeps loading); a new one is refused.
    problem = plan.node_id_problem(node_id) or plan.overlay_problem(node_id)
    if problem:
        raise WgmeshError(f"cannot use ID {node_id}: {problem}")
    # A node that cannot forward still joins, as a leaf.
    cannot_forward = None if plan.is_client(node_id) else forwarding.foresee()
    if cannot_forward:
        click.echo(f"warning: {cannot_forward}", err=True)
    for overlap in overlaps.host_overlaps(plan, node_id):
        click.echo(f"warning: {overlap}", err=True)



@click.command("init")
@click.argument("node_id", metavar="ID", type=int)
@click.option("--public", is_flag=True, help="Let the join API listen on every address, not only this node's mesh address.")
@click.option("--public-ipv4", metavar="ADDR", help="The IPv4 address other nodes reach this one at (default: learned from the routes).")
@click.option("--public-ipv6", metavar="ADDR", help="The IPv6 address other nodes reach this one at (default: learned from the routes).")
@click.option("--no-start", is_flag=True, help="Only write the configuration; start nothing.")
def init_command(node_id: int, public: bool, public_ipv4: str | None, public_ipv6: str | None, no_start: bool) -> None:
    """Initialise this node as node ID of the mesh.

    Writes /etc/wgmesh/wgmesh.toml, creates the join token and brings up
    the node's loopback addresses, its bird and its join API.
    """
    paths = default_paths()
    current = node_config.load(paths.config_file)
    if current.initialised:
        raise WgmeshError(
            f"this node is already initialised as node {current.node_id}; "
            f"to start over, run 'wgmesh down' and remove {paths.config_file}"
        )
    _check_and_warn(MeshPlan.from_config(current), node_id)
    changes = {("node", "id"): node_id, ("api", "public"): public}
    if public_ipv4:
        changes[("node", "public_ipv4")] = public_ipv4
    if public_ipv6:
        changes[("node", "public_ipv6")] = public_ipv6

    # Whatever fails below puts the node back exactly as it was, so that
    # init can simply be run again.
    old_text = paths.config_file.read_bytes() if paths.config_file.exists() else None
    had_tokens = paths.tokens_file.exists()
    try:
        node_config.write_settings(paths.config_file, changes)
        TokenStore(paths.tokens_file).default_token()
        # A fresh node is at the current schema: nothing to migrate later.
        migrations.mark_current(paths)
        node = Node.load(paths)
        if not no_start:
            node.supervisor.start_node()
    except BaseException:
        if old_text is None:
            remove(paths.config_file)
        else:
            write_atomic(paths.config_file, old_text)
        if not had_tokens:
            remove(paths.tokens_file)
        raise
    plan = node.plan
    listen = "all addresses" if public else str(plan.loopback4(node_id))
    log.event("init", f"node {node_id} initialised", node=node_id)
    click.echo(f"node {node_id} initialised: mesh address {plan.loopback4(node_id)} and {plan.loopback6(node_id)}")
    click.echo(f"join API on {listen} port {node.config.api_port}; 'wgmesh token' prints the join token")
