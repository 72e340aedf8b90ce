"""The cost-writer's memory, /run/wgmesh/costs.toml: per link the published
cost, why, the penalties and until when, and the figures behind them.

The cost-writer is its only writer; status, graph and the bird rendering
of other commands read it. It lives under /run: a restart of any service
keeps the penalties, a reboot starts from fresh measurements.
"""

from dataclasses import asdict, fields

from .errors import ConfigError
from .paths import Paths
from .quality import REASONS, LinkState
from .tomlio import read_toml, write_toml

_TYPES = {f.name: f.type for f in fields(LinkState)}


def parse(data: dict, source: str) -> dict[str, LinkState]:
    links = data.get("links", {})
    if not isinstance(links, dict):
        raise ConfigError(f"{source}: [links] must be a table")
    states = {}
    for name, body in links.items():
        try:
            if not isinstance(body, dict) or set(body) - set(_TYPES):
                raise ValueError("unknown keys")
            state = LinkState(**body)
            if not isinstance(state.cost, int) or isinstance(state.cost, bool) or state.reason not in REASONS:
                raise ValueError("bad cost or reason")
            for key in ("loss_until", "jitter_until", "down_until", "changed"):
                if not isinstance(getattr(state, key), (int, float)):
                    raise ValueError(key)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: link {name!r} is not a cost state ({error})") from None
        states[name] = state
    return states


def load(paths: Paths) -> dict[str, LinkState]:
    """Every link's state; {} before the first decision. ConfigError when
    the file cannot be read."""
    try:
        data = read_toml(paths.costs_file)
    except FileNotFoundError:
        return {}
    return parse(data, str(paths.costs_file))


def published_costs(paths: Paths) -> dict[str, int]:
    """Link -> the cost last published; {} when unknown (a fresh boot, or a
    file that cannot be read: the cost-writer's next run rewrites it)."""
    try:
        return {name: state.cost for name, state in load(paths).items()}
    except (ConfigError, OSError):
        return {}


def save(paths: Paths, states: dict[str, LinkState]) -> None:
    write_toml(paths.costs_file, {"links": {name: asdict(state) for name, state in sorted(states.items())}})
