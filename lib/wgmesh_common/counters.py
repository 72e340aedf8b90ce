"""The node's running counts, /run/wgmesh/counters.toml: bird
reconfigurations and published cost changes since the node booted.

Written only under the routing lock, by whoever reconfigures bird
(routing.configure_bird: the cost-writer, and the commands that add
or remove links) and by the cost pass for cost changes; every one of them
can already write /run/wgmesh (it holds bird.conf). It lives under /run on
purpose: bird, the cost states and the penalties all start afresh at boot,
so counts since boot describe the same lifetime, and a Prometheus counter
that restarts from zero is an ordinary reset (rate() and increase() expect
it). The metrics textfile (metrics.py) reports them.
"""

from dataclasses import asdict, dataclass, fields

from . import log
from .errors import ConfigError
from .fieldtypes import has_type
from .paths import Paths
from .tomlio import read_toml, write_toml


@dataclass(frozen=True)
class Counters:
    bird_reconfigurations: int = 0
    cost_changes: int = 0


def path(paths: Paths):
    return paths.counters_file


def parse(data: dict, source: str) -> Counters:
    known = {item.name for item in fields(Counters)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{source} has unknown keys {sorted(unknown)}")
    for key, value in data.items():
        if not has_type(value, int) or value < 0:
            raise ConfigError(f"{source}: {key} must be a count (an integer from 0)")
    return Counters(**data)


def load(paths: Paths) -> Counters:
    """The counts so far; zero before the first, or (with a warning) when
    the file is unreadable: a counter reset, which Prometheus copes with."""
    try:
        return parse(read_toml(path(paths)), str(path(paths)))
    except FileNotFoundError:
        return Counters()
    except (ConfigError, OSError, ValueError) as error:
        log.warning(f"{error}; the counters start again from zero")
        return Counters()


def add(paths: Paths, **increments: int) -> Counters:
    """Add to the counts (call under the routing lock); the new counts."""
    current = asdict(load(paths))
    for key, amount in increments.items():
        current[key] += amount
    write_toml(path(paths), current)
    return Counters(**current)
