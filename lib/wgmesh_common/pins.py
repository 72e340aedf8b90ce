"""Pinned link costs, /var/lib/wgmesh/pins.toml: `wgmesh cost LINK N`.

Durable on purpose (a reboot keeps them) and apart from the link files, so
a rewrite of a link file (an /update) keeps its pin. A pin names the peer
it was set for: a later link of the same name to another node does not
inherit it, and removing a link removes its pin. This module is the file's
only reader and writer.
"""

from dataclasses import dataclass

from .bird import MAX_COST
from .errors import ConfigError
from .fieldtypes import has_type
from .paths import Paths
from .tomlio import file_lock, read_toml, write_toml


@dataclass(frozen=True)
class Pin:
    cost: int
    peer: int


def parse(data: dict, source: str) -> dict[str, Pin]:
    pins = data.get("pins", {})
    if not isinstance(pins, dict):
        raise ConfigError(f"{source}: [pins] must be a table")
    parsed = {}
    for name, body in pins.items():
        if not isinstance(body, dict) or set(body) != {"cost", "peer"} or not has_type(body["peer"], int):
            raise ConfigError(f"{source}: the pin of {name} must be a table with a cost and a peer ID")
        if not has_type(body["cost"], int) or not 1 <= body["cost"] <= MAX_COST:
            raise ConfigError(f"{source}: the pin of {name} must be a cost from 1 to {MAX_COST}")
        parsed[name] = Pin(body["cost"], body["peer"])
    return parsed


def load(paths: Paths) -> dict[str, Pin]:
    try:
        return parse(read_toml(paths.pins_file), str(paths.pins_file))
    except FileNotFoundError:
        return {}


def for_links(pins: dict[str, Pin], links) -> dict[str, int]:
    """Link name -> pinned cost, for the pins set for the link's own peer."""
    return {link.name: pins[link.name].cost for link in links
            if link.name in pins and pins[link.name].peer == link.peer_id}


def pinned_costs(paths: Paths, links) -> tuple[dict[str, int], str | None]:
    """The pinned costs that apply to links; none, and the problem, when
    the file cannot be read (a pin is never worth a failed run)."""
    try:
        return for_links(load(paths), links), None
    except (ConfigError, OSError) as error:
        return {}, str(error)


def set_pin(paths: Paths, name: str, cost: int | None, peer: int | None = None) -> bool:
    """Pin a link's cost (for its peer), or (cost None) return it to
    measurement. True when that changed anything."""
    if cost is not None and not 1 <= cost <= MAX_COST:
        raise ConfigError(f"a pinned cost must be from 1 to {MAX_COST}, not {cost}")
    with file_lock(paths.pins_lock):
        pins = load(paths)
        wanted = None if cost is None else Pin(cost, peer)
        if pins.get(name) == wanted:
            return False
        if wanted is None:
            del pins[name]
        else:
            pins[name] = wanted
        write_toml(paths.pins_file, {"pins": {n: {"cost": p.cost, "peer": p.peer} for n, p in sorted(pins.items())}})
        return True
