"""wgmesh-cost-writer: link files + probe windows -> OSPF costs -> bird."""

import click

from .. import counters, linkfile, log, meshview, metrics, probe, routing, status, tomlio
from ..errors import ConfigError
from .common import load_node


def windows_from(document: dict, source: str) -> dict:
    """The prober's `-o -` output: {"probe": [probe file, ...]}."""
    entries = document.get("probe")
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: expected a list of probe windows under 'probe' (wgmesh-prober -o -)")
    windows = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: probe[{index}] is not a table")
        window = probe.parse(entry, f"{source}: probe[{index}]")
        windows[window.link] = list(window.rounds)
    return windows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--input", "input_file", type=click.File("rb"), default=None, metavar="FILE",
              help="Probe windows from FILE ('-': stdin, as `wgmesh-prober -o -` prints) instead of the probe files.")
@click.option("--json", "as_json", is_flag=True, help="The input (and --dry-run's output) is JSON.")
@click.option("--dry-run", is_flag=True,
              help="Print each link's decision (cost, reason, figures); change nothing.")
def main(input_file, as_json: bool, dry_run: bool) -> None:
    """Decide every link's OSPF cost from its measurements and reconfigure
    bird when a published cost or the set of links changed."""
    node = load_node()
    windows = None
    if input_file is not None:
        fmt = "json" if as_json else "toml"
        windows = windows_from(tomlio.load_stream(input_file, fmt, input_file.name), input_file.name)
    if not dry_run:
        routing.recost(node.paths, node.config, windows)
        write_metrics(node)
        return
    links, _ = linkfile.load_all(node.paths)
    decisions = routing.decide_all(node.paths, node.config, links, windows)
    tomlio.emit({"link": [{"name": d.link.name, "peer": d.link.peer_id, "cost": d.decision.cost,
                           "reason": d.decision.reason, "rtt": d.decision.state.rtt,
                           "loss": d.decision.state.loss, "jitter": d.decision.state.jitter,
                           "host_jitter": d.decision.state.host_jitter,
                           "link_jitter": d.decision.state.link_jitter}
                          for d in decisions]}, "json" if as_json else "toml")


def write_metrics(node) -> None:
    """The node_exporter textfile, after the pass (metrics.py). Whatever
    fails here (a device or bird that cannot be read, a directory that
    cannot be written) costs the metrics, never the cost pass: figures that
    could not be read are left out, and a failed write is a warning."""
    target = metrics.textfile_path(node.paths, node.config.metrics_textfile)
    if target is None:
        return
    try:
        rows, _ = status.gather(node)
        text = metrics.render(rows, len(meshview.reachable(node.plan, node.node_id)), counters.load(node.paths))
        tomlio.write_atomic(target, text.encode())
    except Exception as error:  # noqa: BLE001 - see the docstring
        log.warning(f"could not write the metrics textfile {target}: {error}")
