"""wgmesh-prober: one probe round over every link -> /run/wgmesh/probe/."""

import click

from .. import established, linkfile, log, probe, tomlio
from ..errors import ConfigError
from .common import load_node


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--count", type=click.IntRange(1, 1000), default=None,
              help="Echo requests per link (default: quality.echoes).")
@click.option("--spacing", type=click.FloatRange(0.001, 10), default=None,
              help="Seconds between echoes (default: quality.echo_spacing_ms).")
@click.option("--timeout", type=click.FloatRange(0.01, 60), default=None,
              help="Seconds to wait for each reply (default: quality.echo_timeout_ms).")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="'-' prints the round (TOML, or JSON with --json) instead of writing probe files.")
@click.option("--json", "as_json", is_flag=True, help="With -o -: JSON instead of TOML.")
def main(count: int | None, spacing: float | None, timeout: float | None, output: str | None,
         as_json: bool) -> None:
    """Measure RTT, loss and jitter over every link, once; keep the last
    quality.window_rounds rounds per link."""
    node = load_node()
    settings = node.config.quality
    links, _ = linkfile.load_all(node.paths)
    count = count or settings.echoes
    spacing = spacing if spacing is not None else settings.echo_spacing_ms / 1000.0
    timeout = timeout if timeout is not None else settings.echo_timeout_ms / 1000.0
    rounds = probe.probe_links(links, count, spacing, timeout)
    updated = []
    for link in links:
        try:
            previous = probe.read(node.paths, link.name)
        except ConfigError as error:
            log.warning(f"{error}; starting its window afresh", link=link.name)
            previous = None
        when, samples = rounds[link.name]
        updated.append(probe.add_round(previous, link, when, samples, settings.window_rounds))
    if output == "-":
        tomlio.emit({"probe": [probe.to_document(p) for p in updated]}, "json" if as_json else "toml")
        return
    for window in updated:
        probe.write(node.paths, window)
    for link in links:
        if any(sample is not None for sample in rounds[link.name][1]):
            established.mark(node.paths, link.name, link.public_key)
    probe.prune(node.paths, [l.name for l in links])
    probe.mark_round(node.paths, min((w for w, _ in rounds.values()), default=0.0))
