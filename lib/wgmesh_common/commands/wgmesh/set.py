"""wgmesh set: change settings in wgmesh.toml (comments kept), applied to the running links."""

from dataclasses import replace

import click

from ... import config as node_config
from ... import linkfile, netlink
from ...errors import WgmeshError
from ...paths import default_paths
from ..common import load_node
from .reload import reload_links


@click.command("set")
@click.argument("settings", metavar="SECTION.KEY VALUE [SECTION.KEY VALUE]...", nargs=-1, required=True)
def set_command(settings: tuple[str, ...]) -> None:
    """Set keys of /etc/wgmesh/wgmesh.toml, keeping its comments.

    The whole file is validated before it is written, with every key given
    at once (mesh.subnet and mesh.vxlan_subnet inside it move together);
    nothing is written if any is wrong. 'wgmesh up' (or a reboot) applies
    the change. wireguard.mtu and wireguard.keepalive are also written into
    every link file and applied to the running links at once."""
    if len(settings) % 2:
        raise WgmeshError(f"{settings[-1]!r} has no value: give SECTION.KEY VALUE pairs")
    changes = {}
    for setting, value in zip(settings[::2], settings[1::2]):
        if setting.count(".") != 1:
            raise WgmeshError(f"{setting!r} is not SECTION.KEY (like ospf.hello)")
        section, key = setting.split(".")
        if (section, key) == ("node", "id"):
            raise WgmeshError("the node ID is set once, by 'wgmesh init'")
        changes[(section, key)] = node_config.coerce(section, key, value)
    paths = default_paths()
    node_config.write_settings(paths.config_file, changes)
    for (section, key), value in changes.items():
        click.echo(f"{section}.{key} = {node_config.render_value(value)}")
    if any(section == "wireguard" and key in LINK_SETTINGS for section, key in changes):
        _apply_to_links(paths)



# Settings every link file carries a copy of, applied to running links at once.
LINK_SETTINGS = ("mtu", "keepalive")



def _apply_to_links(paths) -> None:
    """Rewrite this node's link files with the new setting and reload the
    links that run, each in place (no link restarts)."""
    node = load_node()
    changed = []
    for link in linkfile.load_all(paths)[0]:
        updated = replace(link, mtu=node.config.mtu, keepalive=node.config.keepalive)
        if updated != link:
            linkfile.save_settings(paths, updated)
            changed.append(link.name)
    running = [name for name in changed if netlink.interface_exists(name)]
    failures = reload_links(node, running)
    if failures:
        raise WgmeshError("the setting is saved but some links did not take it: " + "; ".join(failures))
