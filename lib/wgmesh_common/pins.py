"""Pinned link costs, /var/lib/wgmesh/pins.toml: `wgmesh cost LINK N`.

Durable on purpose (a reboot keeps them) and apart from the link files, so
a rewrite of a link file (an /update) keeps its pin. A link's pin goes with
the link. This module is the file's only reader and writer.
"""

from .errors import ConfigError
from .paths import Paths
from .quality import clamp
from .tomlio import file_lock, read_toml, write_toml

MIN_PIN = 1
MAX_PIN = 65535


def parse(data: dict, source: str) -> dict[str, int]:
    pins = data.get("pins", {})
    if not isinstance(pins, dict):
        raise ConfigError(f"{source}: [pins] must be a table")
    for name, cost in pins.items():
        if not isinstance(cost, int) or isinstance(cost, bool) or not MIN_PIN <= cost <= MAX_PIN:
            raise ConfigError(f"{source}: the pin of {name} must be a cost from {MIN_PIN} to {MAX_PIN}")
    return dict(pins)


def load(paths: Paths) -> dict[str, int]:
    try:
        return parse(read_toml(paths.pins_file), str(paths.pins_file))
    except FileNotFoundError:
        return {}


def set_pin(paths: Paths, name: str, cost: int | None) -> bool:
    """Pin a link's cost, or (None) return it to measurement. True when
    that changed anything."""
    if cost is not None and clamp(cost) != cost:
        raise ConfigError(f"a pinned cost must be from {MIN_PIN} to {MAX_PIN}, not {cost}")
    with file_lock(paths.state_dir / "pins.lock"):
        pins = load(paths)
        if pins.get(name) == cost:
            return False
        if cost is None:
            pins.pop(name)
        else:
            pins[name] = cost
        write_toml(paths.pins_file, {"pins": dict(sorted(pins.items()))})
        return True
