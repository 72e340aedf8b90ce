"""wgmesh-prober: one probe round over every link -> /run/wgmesh/probe/."""

import click

from .. import linkfile, probe, tomlio
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--count", default=5, show_default=True, help="Echo requests per link.")
@click.option("--interval", default=0.2, show_default=True, help="Seconds between echoes.")
@click.option("--timeout", default=1.0, show_default=True, help="Seconds to wait for each reply.")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="'-' prints the round (TOML, or JSON with --json) instead of writing probe files.")
@click.option("--json", "as_json", is_flag=True, help="With -o -: JSON instead of TOML.")
def main(count: int, interval: float, timeout: float, output: str | None, as_json: bool) -> None:
    """Measure RTT, loss and jitter over every link, once."""
    node = load_node()
    links, _ = linkfile.load_all(node.paths)
    results = probe.probe_links(links, count, interval, timeout)
    if output == "-":
        tomlio.emit({"probe": [r.to_dict() for r in results]}, "json" if as_json else "toml")
        return
    probe.write_results(node.paths, results, [l.name for l in links])
