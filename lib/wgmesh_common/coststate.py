"""The cost-writer's memory, /run/wgmesh/costs.toml: per link the published
cost, why, the penalties and until when, and the figures behind them.

Written only by a cost pass (routing.recost: wgmesh-cost-writer, or
`wgmesh cost` after it changed a pin), under the routing lock; status,
graph and the bird rendering of other commands read it. It lives under
/run: a restart of any service keeps the penalties, a reboot starts from
fresh measurements.
"""

import math
from dataclasses import asdict

from . import log
from .bird import MAX_COST
from .errors import ConfigError
from .fieldtypes import has_type
from .paths import Paths
from .quality import REASONS, LinkState
from .tomlio import read_toml, write_toml

_COSTS = ("cost", "latency_cost")
_TIMES = ("loss_until", "jitter_until", "down_until", "answered_since")
# Each optional: a file written before a figure existed still reads.
_FIGURES = {"rtt": 60_000.0, "loss": 100.0, "jitter": 60_000.0, "host_jitter": 60_000.0, "link_jitter": 60_000.0}


def _number(value, low: float, high: float) -> bool:
    return has_type(value, (int, float)) and math.isfinite(value) \
        and low <= value <= high


def parse_state(body, where: str) -> LinkState:
    if not isinstance(body, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = set(body) - set(_COSTS) - set(_TIMES) - set(_FIGURES) - {"reason"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    _check_numbers(body, where)
    if body.get("reason", "base") not in REASONS:
        raise ConfigError(f"{where}: reason must be one of {', '.join(REASONS)}")
    if "cost" not in body:
        raise ConfigError(f"{where} has no cost")
    return LinkState(**body)


def _check_numbers(body: dict, where: str) -> None:
    for key in _COSTS:
        value = body.get(key, 1)
        if not (isinstance(value, int) and _number(value, 1, MAX_COST)):
            raise ConfigError(f"{where}: {key} must be a cost from 1 to {MAX_COST}")
    for key in _TIMES:
        if not _number(body.get(key, 0.0), 0, 1e12):
            raise ConfigError(f"{where}: {key} must be a time")
    for key, high in _FIGURES.items():
        if key in body and not _number(body[key], 0, high):
            raise ConfigError(f"{where}: {key} must be a number from 0 to {high:g}")


def parse(data: dict, source: str) -> dict[str, LinkState]:
    """Every link's state; a link whose entry is bad is left out with a
    warning (it starts afresh), the others keep theirs."""
    links = data.get("links", {})
    if not isinstance(links, dict):
        raise ConfigError(f"{source}: [links] must be a table")
    states = {}
    for name, body in links.items():
        try:
            states[name] = parse_state(body, f"{source}: link {name}")
        except ConfigError as error:
            log.warning(f"{error}; its cost state starts afresh", link=name)
    return states


def load(paths: Paths) -> dict[str, LinkState]:
    """Every link's state; {} before the first decision. ConfigError when
    the file cannot be read."""
    try:
        data = read_toml(paths.costs_file)
    except FileNotFoundError:
        return {}
    return parse(data, str(paths.costs_file))


def read_states(paths: Paths) -> tuple[dict[str, LinkState], str | None]:
    """Every link's state; none, and the problem, when the file cannot be
    read (the next cost pass rewrites it)."""
    try:
        return load(paths), None
    except (ConfigError, OSError) as error:
        return {}, str(error)


def published_costs(paths: Paths) -> dict[str, int]:
    """Link -> the cost last published; {} when unknown (a fresh boot, or a
    file that cannot be read)."""
    return {name: state.cost for name, state in read_states(paths)[0].items()}


def save(paths: Paths, states: dict[str, LinkState]) -> None:
    write_toml(paths.costs_file, {"links": {name: asdict(state) for name, state in sorted(states.items())}})
