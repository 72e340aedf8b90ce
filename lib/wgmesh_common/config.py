"""The node configuration, /etc/wgmesh/wgmesh.toml: schema, defaults, validation.

This module is the only reader and writer of that file. Operators edit it by
hand, so writes go through set_values(), which edits the document with
tomlkit (a TOML parser that keeps comments, blank lines and key order)
instead of re-serialising it.
"""

import ipaddress
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .addressing import MAX_NODE_ID, MeshPlan
from .errors import ConfigError, NotInitialisedError
from .fieldtypes import has_type
from .quality import QualitySettings
from .tomlio import read_toml, write_atomic

BACKENDS = ("auto", "kernel", "userspace")
SERVICE_MANAGERS = ("auto", "systemd", "direct")


def _int_in(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"must be between {low} and {high}"
        return None

    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in options:
            return f"must be one of {', '.join(options)}"
        return None

    return check


def _network(version: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        try:
            net = ipaddress.ip_network(value)
        except ValueError as error:
            if "has host bits set" in str(error):
                return f"{value!r} has host bits set (did you mean {ipaddress.ip_network(value, strict=False)}?)"
            return f"{value!r} is not a network with a prefix (like {'10.0.0.0/16' if version == 4 else 'fd10::/48'})"
        if net.version != version:
            return f"must be an IPv{version} network"
        return None

    return check


def _address(version: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IPv{version} address"
        if addr.version != version:
            return f"must be an IPv{version} address"
        return None

    return check


def _textfile(value: Any) -> str | None:
    if value and not (value.startswith("/") and value.endswith(".prom")):
        return f"must be an absolute path ending in .prom (node_exporter reads only those), or \"\" for none, not {value!r}"
    return None


def _address_list(value: Any) -> str | None:
    for entry in value:
        try:
            if not isinstance(entry, str):
                raise TypeError(entry)
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            return f"must list addresses or networks (like \"127.0.0.1\" or \"10.1.0.0/24\"), not {entry!r}"
    return None


# section -> key -> (type, default, check). A default of None means "unset".
SCHEMA: dict[str, dict[str, tuple[type, Any, Callable[[Any], str | None] | None]]] = {
    "node": {
        "id": (int, None, _int_in(0, MAX_NODE_ID)),
        # Underlay addresses other nodes reach this one at. Unset: learned from
        # this node's own interfaces and routes, never from a web service.
        "public_ipv4": (str, None, _address(4)),
        "public_ipv6": (str, None, _address(6)),
        # Underlay round trip (ms) beyond which no link is made to a node,
        # set by `wgmesh proximity CUTOFF`; 0: no limit.
        "proximity_cutoff": (int, 0, _int_in(0, 100000)),
    },
    "mesh": {
        "subnet": (str, "10.0.0.0/16", _network(4)),
        "node_prefix": (int, 23, _int_in(22, 24)),
        "subnet6": (str, "fd10::/48", _network(6)),
        "vxlan_subnet": (str, "10.0.251.0/24", _network(4)),
        "client_id_start": (int, 200, _int_in(1, MAX_NODE_ID + 1)),
    },
    "api": {
        "public": (bool, False, None),
        "port": (int, 8080, _int_in(1, 65535)),
        # Reverse proxies whose X-Forwarded-For names the client, for the
        # failed-request limiter and the logs only (never for "inside the mesh").
        "trusted_proxies": (list, [], _address_list),
    },
    "wireguard": {
        "backend": (str, "auto", _choice(BACKENDS)),
        "port_base": (int, 51820, _int_in(1024, 65000)),
        "mtu": (int, 1420, _int_in(1280, 9000)),
        "keepalive": (int, 25, _int_in(0, 3600)),
        # Underlay families links are made over: "auto" makes one link per
        # family both nodes have an address in, "4" or "6" only that one.
        "transport": (str, "auto", _choice(("auto", "4", "6"))),
    },
    "join": {
        # Seconds a link half may exist without ever completing a handshake
        # before both halves are removed and the mesh pass makes the link
        # again (abandoned.py); 0: never.
        "abandon_after": (int, 150, _int_in(0, 86400)),
    },
    "ospf": {
        "hello": (int, 1, _int_in(1, 65535)),
        "dead": (int, 4, _int_in(2, 65535)),
        "base_cost": (int, 100, _int_in(1, 65535)),
    },
    "system": {
        "service_manager": (str, "auto", _choice(SERVICE_MANAGERS)),
    },
    # Quality routing: what the prober measures and how the cost-writer turns
    # it into OSPF costs (the rules are in quality.py; defaults from
    # QualitySettings, so the two cannot disagree).
    "quality": {
        "interval": (int, QualitySettings.interval, _int_in(2, 3600)),
        "echoes": (int, QualitySettings.echoes, _int_in(2, 200)),
        "echo_spacing_ms": (int, QualitySettings.echo_spacing_ms, _int_in(1, 1000)),
        "echo_timeout_ms": (int, QualitySettings.echo_timeout_ms, _int_in(10, 10000)),
        "window_rounds": (int, QualitySettings.window_rounds, _int_in(2, 100)),
        "recent_rounds": (int, QualitySettings.recent_rounds, _int_in(1, 100)),
        "ms_cost": (int, QualitySettings.ms_cost, _int_in(0, 1000)),
        "loss_threshold": (int, QualitySettings.loss_threshold, _int_in(1, 100)),
        "loss_penalty": (int, QualitySettings.loss_penalty, _int_in(0, 65535)),
        "jitter_threshold": (int, QualitySettings.jitter_threshold, _int_in(1, 10000)),
        "jitter_penalty": (int, QualitySettings.jitter_penalty, _int_in(0, 65535)),
        "down_rounds": (int, QualitySettings.down_rounds, _int_in(1, 100)),
        "hold_down": (int, QualitySettings.hold_down, _int_in(0, 86400)),
        "hysteresis_relative": (int, QualitySettings.hysteresis_relative, _int_in(0, 1000)),
        "hysteresis_absolute": (int, QualitySettings.hysteresis_absolute, _int_in(0, 65535)),
    },
    # The node_exporter textfile the cost-writer writes after each probe
    # round (metrics.py). Unset: /var/lib/prometheus/node-exporter/wgmesh.prom
    # when that directory exists; "": none.
    "metrics": {
        "textfile": (str, None, _textfile),
    },
    # wgmesh-notifier (the URLs, which hold credentials, are in notify.toml).
    "notify": {
        "coalesce_window": (int, 30, _int_in(5, 3600)),
        "retry_max": (int, 300, _int_in(10, 86400)),
        "outbox_limit": (int, 100, _int_in(1, 10000)),
    },
}


@dataclass(frozen=True)
class NodeConfig:
    node_id: int | None
    public_ipv4: str | None
    public_ipv6: str | None
    proximity_cutoff: int
    subnet: ipaddress.IPv4Network
    node_prefix: int
    subnet6: ipaddress.IPv6Network
    vxlan_subnet: ipaddress.IPv4Network
    client_id_start: int
    api_public: bool
    api_port: int
    backend: str
    port_base: int
    mtu: int
    keepalive: int
    transport: str
    ospf_hello: int
    ospf_dead: int
    base_cost: int
    service_manager: str
    quality: QualitySettings = QualitySettings()  # noqa: RUF009 - frozen: one shared default is safe
    api_trusted_proxies: tuple[str, ...] = ()
    metrics_textfile: str | None = None
    notify_coalesce_window: int = 30
    notify_retry_max: int = 300
    notify_outbox_limit: int = 100
    abandon_after: int = 150

    @property
    def initialised(self) -> bool:
        return self.node_id is not None

    @property
    def is_client(self) -> bool:
        return self.node_id is not None and self.node_id >= self.client_id_start

    def require_id(self) -> int:
        if self.node_id is None:
            raise NotInitialisedError("this node is not initialised: run 'wgmesh init ID' first")
        return self.node_id


def parse(data: dict[str, Any], source: str = "wgmesh.toml") -> NodeConfig:  # noqa: C901 - a check per setting, until one typed-field validator
    """Validate a parsed document; raise ConfigError naming the first problem."""
    values: dict[str, dict[str, Any]] = {}
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: {section} must be a table, like [{section}]")
    for section, keys in SCHEMA.items():
        body = data.get(section, {})
        for key in body:
            if key not in keys:
                raise ConfigError(f"{source}: unknown key {section}.{key} (known: {', '.join(keys)})")
        values[section] = {}
        for key, (kind, default, check) in keys.items():
            value = body.get(key, default)
            if value is not None:
                if not has_type(value, kind):
                    raise ConfigError(f"{source}: {section}.{key} must be {_type_name(kind)}, not {value!r}")
                if check and (problem := check(value)):
                    raise ConfigError(f"{source}: {section}.{key} {problem}")
            values[section][key] = value
    config = NodeConfig(
        node_id=values["node"]["id"],
        public_ipv4=values["node"]["public_ipv4"],
        public_ipv6=values["node"]["public_ipv6"],
        proximity_cutoff=values["node"]["proximity_cutoff"],
        subnet=ipaddress.IPv4Network(values["mesh"]["subnet"], strict=False),
        node_prefix=values["mesh"]["node_prefix"],
        subnet6=ipaddress.IPv6Network(values["mesh"]["subnet6"], strict=False),
        vxlan_subnet=ipaddress.IPv4Network(values["mesh"]["vxlan_subnet"], strict=False),
        client_id_start=values["mesh"]["client_id_start"],
        api_public=values["api"]["public"],
        api_port=values["api"]["port"],
        backend=values["wireguard"]["backend"],
        port_base=values["wireguard"]["port_base"],
        mtu=values["wireguard"]["mtu"],
        keepalive=values["wireguard"]["keepalive"],
        transport=values["wireguard"]["transport"],
        ospf_hello=values["ospf"]["hello"],
        ospf_dead=values["ospf"]["dead"],
        base_cost=values["ospf"]["base_cost"],
        service_manager=values["system"]["service_manager"],
        quality=QualitySettings(**values["quality"]),
        api_trusted_proxies=tuple(values["api"]["trusted_proxies"]),
        metrics_textfile=values["metrics"]["textfile"],
        notify_coalesce_window=values["notify"]["coalesce_window"],
        notify_retry_max=values["notify"]["retry_max"],
        notify_outbox_limit=values["notify"]["outbox_limit"],
        abandon_after=values["join"]["abandon_after"],
    )
    quality = config.quality
    if quality.recent_rounds > quality.window_rounds or quality.down_rounds > quality.window_rounds:
        raise ConfigError(f"{source}: quality.recent_rounds and quality.down_rounds must not exceed "
                          f"quality.window_rounds ({quality.window_rounds})")
    if quality.echoes * quality.echo_spacing_ms + quality.echo_timeout_ms >= quality.interval * 1000:
        raise ConfigError(f"{source}: a probe round (quality.echoes x quality.echo_spacing_ms + "
                          f"quality.echo_timeout_ms) must fit in quality.interval ({quality.interval} s)")
    if config.ospf_dead <= config.ospf_hello:
        raise ConfigError(f"{source}: ospf.dead ({config.ospf_dead}) must be longer than ospf.hello ({config.ospf_hello})")
    plan = MeshPlan.from_config(config)
    plan.check_layout(source)
    if config.node_id is not None:
        plan.check_node_id(config.node_id, source)
    return config


def _type_name(kind: type) -> str:
    return {int: "an integer", str: "a string", bool: "true or false", list: "a list"}[kind]


def load(path: Path) -> NodeConfig:
    """The node's config; a missing file is an uninitialised node with defaults."""
    if not Path(path).exists():
        return parse({}, str(path))
    return parse(read_toml(path), str(path))


def initialised_file(path: Path) -> bool:
    """Whether path is the config of an initialised node, for the package's
    postinst. A file that cannot be read counts as one: then the migration
    it gates reads it and names the problem, instead of skipping it."""
    try:
        return load(path).initialised
    except ConfigError:
        return True
    except (OSError, UnicodeDecodeError) as error:
        # Not a traceback the postinst would read as "not initialised".
        print(f"wgmesh: cannot read {path} ({error.__class__.__name__}: {getattr(error, 'strerror', None) or error}); "
              "running the migration, which needs it", file=sys.stderr)
        return True


def defaults() -> NodeConfig:
    return parse({})


def coerce(section: str, key: str, text: str) -> Any:
    """Turn a command-line string into the schema's type for section.key."""
    if section not in SCHEMA or key not in SCHEMA[section]:
        raise ConfigError(f"unknown setting {section}.{key}")
    kind = SCHEMA[section][key][0]
    if kind is bool:
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{section}.{key} must be true or false, not {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{section}.{key} must be an integer, not {text!r}") from None
    if kind is list:
        # `wgmesh set api.trusted_proxies 127.0.0.1,::1`; an empty string empties it.
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _tomlkit():
    """tomlkit, imported on the first edit rather than with this module: the
    boot-time generator reads the config through here and must start fast
    (every boot and daemon-reload waits for it), and only `wgmesh set` edits."""
    import tomlkit
    import tomlkit.exceptions  # write_settings catches its TOMLKitError

    return tomlkit


def render_value(value: Any) -> str:
    """value as TOML writes it (for messages)."""
    return _tomlkit().item(value).as_string()


def set_values(text: str, changes: dict[tuple[str, str], Any]) -> str:
    """Return the document with each (section, key) set; every comment, blank
    line and the order of the keys stay as they were. A key already there
    keeps its place (and its trailing comment); a new one goes at the end of
    its section, and a missing section at the end of the document."""
    tomlkit = _tomlkit()
    document = tomlkit.parse(text)
    for (section, key), value in changes.items():
        if section not in document:
            document[section] = tomlkit.table()
        if not isinstance(document[section], dict):
            raise ConfigError(f"{section} must be a table, like [{section}]")
        document[section][key] = value
    return tomlkit.dumps(document)


def write_settings(path: Path, changes: dict[tuple[str, str], Any]) -> NodeConfig:
    """Apply changes to the config file, validating the result before writing."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    try:
        new_text = set_values(text, changes)
        document = tomllib.loads(new_text)
    except (_tomlkit().exceptions.TOMLKitError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML, so it was not changed: {error}") from None
    config = parse(document, str(path))
    write_atomic(path, new_text.encode())
    return config
