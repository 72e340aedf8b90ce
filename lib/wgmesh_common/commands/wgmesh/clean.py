"""wgmesh clean: remove links to nodes that are gone."""

import sys

import click

from ... import join, linkfile, probe, status
from ...errors import WgmeshError
from ..common import load_node


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
