"""wgmesh migrate: bring this node's files to the current schema."""

import click

from ... import migrations
from ...paths import default_paths


@click.command("migrate")
@click.option("--quiet", is_flag=True, help="Print nothing when there is nothing to do.")
def migrate_command(quiet: bool) -> None:
    """Upgrade this node's files to what this wgmesh version expects."""
    done = migrations.migrate(default_paths())
    if done:
        click.echo(f"applied migrations: {', '.join(map(str, done))}")
    elif not quiet:
        click.echo(f"nothing to do (schema {migrations.CURRENT})")
