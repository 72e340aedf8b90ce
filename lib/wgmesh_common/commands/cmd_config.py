"""wgmesh set / migrate: change the node config, upgrade on-disk state."""

import click

from .. import config as node_config
from .. import migrations
from ..errors import WgmeshError
from ..paths import default_paths


@click.command("set")
@click.argument("setting", metavar="SECTION.KEY")
@click.argument("value")
def set_command(setting: str, value: str) -> None:
    """Set one key of /etc/wgmesh/wgmesh.toml, keeping its comments.

    The whole file is validated before it is written; 'wgmesh up' (or a
    reboot) applies the change."""
    if setting.count(".") != 1:
        raise WgmeshError(f"{setting!r} is not SECTION.KEY (like ospf.hello)")
    section, key = setting.split(".")
    if (section, key) == ("node", "id"):
        raise WgmeshError("the node ID is set once, by 'wgmesh init'")
    paths = default_paths()
    node_config.write_settings(paths.config_file, {(section, key): node_config.coerce(section, key, value)})
    click.echo(f"{setting} = {node_config.render_value(node_config.coerce(section, key, value))}")


@click.command("migrate")
@click.option("--quiet", is_flag=True, help="Print nothing when there is nothing to do.")
def migrate_command(quiet: bool) -> None:
    """Upgrade this node's files to what this wgmesh version expects."""
    done = migrations.migrate(default_paths())
    if done:
        click.echo(f"applied migrations: {', '.join(map(str, done))}")
    elif not quiet:
        click.echo(f"nothing to do (schema {migrations.CURRENT})")
