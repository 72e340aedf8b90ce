"""Command-line programs, one module per `wgmesh` subcommand (as netplan does).

bin/ scripts only call run(); the click declarations live here so the
commands are importable for tests and `--help` stays consistent.
"""

import sys

import click

from ..errors import WgmeshError


def run(command: click.Command, prog_name: str) -> None:
    """Invoke a click command with wgmesh's error contract: one line on
    stderr naming the problem, and a non-zero exit status."""
    try:
        command.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(f"{prog_name}: aborted", err=True)
        sys.exit(1)
    except click.UsageError as error:
        context = f"{error.ctx.command_path}: " if error.ctx else f"{prog_name}: "
        click.echo(f"{context}error: {error.format_message()} (see --help)", err=True)
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"{prog_name}: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except WgmeshError as error:
        click.echo(f"{prog_name}: error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo(f"{prog_name}: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
