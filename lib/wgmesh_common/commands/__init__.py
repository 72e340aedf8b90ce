"""Command-line programs, one module per `wgmesh` subcommand (as netplan does).

bin/ scripts only call run(); the click declarations live here so the
commands are importable for tests and `--help` stays consistent.
"""

import sys

import click

from .. import log
from ..errors import WgmeshError


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        log.configure(verbose=True)


def add_verbose_option(command: click.Command) -> click.Command:
    """-v/--verbose on command and each of its subcommands (`wgmesh -v
    status` and `wgmesh status -v` alike): debug lines too, among them
    every external command run."""
    if not any(param.name == "verbose" for param in command.params):
        command.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                                           callback=_verbose, help="Log debug lines too (to the journal or stderr)."))
    for sub in getattr(command, "commands", {}).values():
        add_verbose_option(sub)
    return command


def run(command: click.Command, prog_name: str) -> None:
    """Invoke a click command with wgmesh's error contract: one line on
    stderr naming the problem, and a non-zero exit status."""
    add_verbose_option(command)
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
