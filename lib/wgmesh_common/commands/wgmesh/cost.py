"""wgmesh cost: pin a link's OSPF cost, or show the costs."""

import click

from ... import linkfile, pins, routing, status
from ...errors import WgmeshError
from ..common import load_node


@click.command("cost")
@click.argument("link", required=False)
@click.argument("value", required=False, metavar="N|auto")
def cost_command(link: str | None, value: str | None) -> None:
    """Pin LINK's OSPF cost to N (1-65535), or return it to measurement with
    'auto'. Without arguments: every link's cost and why.

    OSPF costs are per direction: this sets this node's side only. A link
    to or from a client still costs 10000 more (up to 65535). A pin survives
    reboots and rewrites of the link file; it goes when the link goes."""
    node = load_node()
    if link is None:
        links, _ = linkfile.load_all(node.paths)
        states, pinned, problems = status.cost_states(node, links)
        for item in links:
            state = states.get(item.name)
            cost = "-" if state is None else str(state.cost)
            click.echo(f"{item.name}\t{cost}\t{status.explain(state, item.name in pinned)}")
        for problem in problems:
            click.echo(f"warning: {problem}", err=True)
        return
    if value is None:
        raise WgmeshError("give a cost (1-65535) or 'auto', like: wgmesh cost wgm2 500")
    if not linkfile.valid_name(link) or not linkfile.exists(node.paths, link):
        raise WgmeshError(f"no link named {link!r} (see 'wgmesh status')")
    if value == "auto":
        cost = None
    else:
        try:
            cost = int(value)
        except ValueError:
            raise WgmeshError(f"the cost must be a whole number from 1 to 65535 or 'auto', not {value!r}") from None
    peer = linkfile.load(node.paths, link).peer_id
    pins.set_pin(node.paths, link, cost, peer)
    decisions = routing.recost(node.paths, node.config)
    published = {d.link.name: d.decision for d in decisions}.get(link)
    if published is not None:
        click.echo(f"{link}: cost {published.cost} ({status.explain(published.state, cost is not None)})")
