"""wgmesh-join-helper: the privileged half of the join API (see joinhelper)."""

import click

from .. import joinhelper, joinserver, log, servicemanager
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Listen here instead of on the socket systemd passes (wgmesh-join-helper.socket).")
def main(socket_path: str | None) -> None:
    """Serve the join API's requests that wgmesh-join-server (unprivileged)
    hands over a local socket: joins, key updates and disconnects."""
    log.configure(daemon=True)
    node = load_node()
    sock = joinhelper.listening_socket(socket_path)
    server = joinhelper.HelperServer(joinserver.JoinService(node), sock)
    log.info(f"join helper of node {node.node_id} listening on {sock.getsockname()}")
    # Unset: what this helper runs (systemctl, wgmesh-link) must not speak
    # to systemd as if it were this service.
    servicemanager.notify("READY=1", unset_environment=True)
    server.serve_forever()
