"""wgmesh-join-server: the HTTP API other nodes join through."""

import click

from .. import joinhelper, joinserver, log, servicemanager
from ..errors import WgmeshError
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--helper", "helper_socket", default=None, metavar="PATH",
              help="Hand every request to wgmesh-join-helper listening at PATH, which does the privileged work; "
                   "this process then needs no privileges and no configuration (how the systemd units run it). "
                   "The listening sockets must come from systemd.")
def main(helper_socket: str | None) -> None:
    """Serve POST /connectivity, POST /connect, PATCH /update and
    POST /disconnect on this node's mesh address (all addresses with
    api.public), or on the sockets systemd passes."""
    log.configure(daemon=True)
    if helper_socket is None:
        joinserver.serve_node(load_node())
        return
    sockets = servicemanager.passed_sockets()
    if not sockets:
        raise WgmeshError("--helper takes its listening sockets from systemd (wgmesh-join-server.socket), "
                          "and none were passed")
    joinserver.serve(joinhelper.HelperClient(helper_socket), sockets, "join-server front end")
