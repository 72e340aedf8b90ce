"""Link files: /etc/wgmesh/links/NAME.toml plus NAME.key and NAME.psk (0600).

One file per link, the single source of truth for what links this node has:
the generator turns them into wgmesh-link@NAME units, the link-maker realises
them, the cost-writer puts them into bird. This module is their only reader
and writer.
"""

import base64
import binascii
import ipaddress
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .addressing import MAX_NODE_ID
from .errors import ConfigError
from .fieldtypes import has_type
from .paths import Paths
from .tomlio import SECRET_MODE, read_toml, remove, write_atomic, write_toml

LINK_TYPES = ("wireguard",)
# A link's two ends: the listener answered the /connect, owns the link's
# /31 and /127 (from its block) and waits for the peer; the dialer asked,
# knows the listener's endpoint and sends the keepalives.
LISTENER, DIALER = "listener", "dialer"
ROLES = (LISTENER, DIALER)
# Before schema 3 the roles were "server" and "client". The migration
# rewrites them, but the generator reads link files at boot and during an
# upgrade, before `wgmesh migrate` has run (or on a node where it failed):
# reading the old words keeps those links up. Only the new ones are written.
LEGACY_ROLES = {"server": LISTENER, "client": DIALER}
FAMILIES = (4, 6)
# Linux interface names are at most 15 bytes; the name doubles as a file name
# and a systemd instance name, so keep it to characters all three accept.
# Matched whole (fullmatch): `$` alone would let a trailing newline through.
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,15}")
# HOST:PORT or [V6]:PORT, ASCII digits only (\d takes any script's digits).
ENDPOINT_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})")


def link_name(peer_id: int, family: int) -> str:
    """A link's name: one per peer and transport family, the same on every retry."""
    return f"wgm{peer_id}" if family == 4 else f"wgm{peer_id}v6"


def valid_name(name: str) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def check_key(value: Any, what: str) -> str:
    """A WireGuard key: 32 bytes in standard base64."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise ConfigError(f"{what} must decode to 32 bytes, not {len(raw)}")
    return value


@dataclass(frozen=True)
class Link:
    name: str
    peer_id: int
    role: str
    family: int
    listen_port: int
    public_key: str
    peer_public_key: str
    offset: int
    local4: str
    peer4: str
    local6: str
    peer6: str
    type: str = "wireguard"
    endpoint: str | None = None
    mtu: int = 1420
    keepalive: int = 25
    extra: dict = field(default_factory=dict)
    # False when the peer said at join time that it cannot forward (a
    # read-only /proc/sys): its link is then routed like a client's. Here,
    # not in a state file of its own, because it is a fact about this link's
    # peer that lives and dies with the link, written once by the side that
    # makes the file, and must survive reboots as the link does.
    peer_forwards: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        # Only written when False: the files of ordinary links stay as
        # older versions wrote and read them.
        if data["peer_forwards"]:
            del data["peer_forwards"]
        return data


_FIELDS = {
    "name": str,
    "peer_id": int,
    "role": str,
    "family": int,
    "listen_port": int,
    "public_key": str,
    "peer_public_key": str,
    "offset": int,
    "local4": str,
    "peer4": str,
    "local6": str,
    "peer6": str,
    "type": str,
    "endpoint": str,
    "mtu": int,
    "keepalive": int,
    "extra": dict,
    "peer_forwards": bool,
}
_OPTIONAL = {"type", "endpoint", "mtu", "keepalive", "extra", "peer_forwards"}


def parse(data: dict[str, Any], source: str) -> Link:  # noqa: C901 - a check per field, until one typed-field validator
    for key in data:
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r}")
    for key, kind in _FIELDS.items():
        if key not in data:
            if key in _OPTIONAL:
                continue
            raise ConfigError(f"{source}: missing key {key!r}")
        value = data[key]
        if not has_type(value, kind):
            raise ConfigError(f"{source}: {key} has the wrong type ({type(value).__name__})")
    link = Link(**{**data, "role": current_role(data["role"])})
    if not valid_name(link.name):
        raise ConfigError(f"{source}: name {link.name!r} is not a valid interface name")
    if link.role not in ROLES:
        raise ConfigError(f"{source}: role must be {LISTENER} or {DIALER}, not {link.role!r}")
    if link.family not in FAMILIES:
        raise ConfigError(f"{source}: family must be 4 or 6, not {link.family}")
    if link.type not in LINK_TYPES:
        raise ConfigError(f"{source}: unknown link type {link.type!r} (known: {', '.join(LINK_TYPES)})")
    if not 1 <= link.listen_port <= 65535:
        raise ConfigError(f"{source}: listen_port {link.listen_port} out of range")
    if not 0 <= link.peer_id <= MAX_NODE_ID:
        raise ConfigError(f"{source}: peer_id {link.peer_id} out of range")
    check_key(link.public_key, f"{source}: public_key")
    check_key(link.peer_public_key, f"{source}: peer_public_key")
    try:
        for key, version in (("local4", 4), ("peer4", 4), ("local6", 6), ("peer6", 6)):
            if ipaddress.ip_address(getattr(link, key)).version != version:
                raise ValueError(key)
    except ValueError:
        raise ConfigError(f"{source}: {key} is not an IPv{version} address") from None
    if link.role == DIALER and not link.endpoint:
        raise ConfigError(f"{source}: a {DIALER} link needs an endpoint")
    if link.endpoint is not None:
        parse_endpoint(link.endpoint, f"{source}: endpoint")
    return link


def current_role(role: Any) -> Any:
    """The role's word as written today (a legacy word mapped, anything else
    as it is, for parse to judge)."""
    return LEGACY_ROLES.get(role, role) if isinstance(role, str) else role


def parse_endpoint(endpoint: str, what: str = "endpoint") -> tuple[str, int]:
    """Split HOST:PORT or [V6]:PORT; raise ConfigError on anything else."""
    # A newline here would end a UAPI set message early: the whole string
    # must match, never a prefix of it.
    match = ENDPOINT_RE.fullmatch(endpoint) if isinstance(endpoint, str) else None
    if not match:
        raise ConfigError(f"{what} {endpoint!r} is not ADDRESS:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what} {endpoint!r} has no valid IP address") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what} {endpoint!r} has a port out of range")
    return host, port


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load(paths: Paths, name: str) -> Link:
    path = paths.link_file(name)
    link = parse(read_toml(path), str(path))
    if link.name != name:
        raise ConfigError(f"{path}: name {link.name!r} does not match the file name")
    return link


def load_all(paths: Paths) -> tuple[list[Link], list[str]]:
    """Every valid link file, and one line per file that could not be read."""
    links, problems = [], []
    if not paths.links_dir.is_dir():
        return links, problems
    for path in sorted(paths.links_dir.glob("*.toml")):
        try:
            links.append(load(paths, path.stem))
        except (ConfigError, OSError) as error:
            problems.append(str(error))
    return links, problems


def exists(paths: Paths, name: str) -> bool:
    return paths.link_file(name).exists()


def read_secret(path: Path) -> str:
    return Path(path).read_text().strip()


def save(paths: Paths, link: Link, private_key: str, psk: str) -> None:
    """Write the secrets first: a link file is only ever visible complete."""
    write_atomic(paths.link_key(link.name), (private_key + "\n").encode(), SECRET_MODE)
    write_atomic(paths.link_psk(link.name), (psk + "\n").encode(), SECRET_MODE)
    write_toml(paths.link_file(link.name), link.to_dict())


def save_settings(paths: Paths, link: Link) -> None:
    """Rewrite a link's settings (MTU, keepalive, endpoint); its keys stay."""
    write_toml(paths.link_file(link.name), link.to_dict())


def rewrite_legacy_roles(paths: Paths) -> list[str]:
    """Rewrite every link file that still says a legacy role word with the
    new word (atomically, nothing else changed); the names rewritten. A file
    that does not parse is left as it is, for load_all to report."""
    rewritten = []
    if not paths.links_dir.is_dir():
        return rewritten
    for path in sorted(paths.links_dir.glob("*.toml")):
        try:
            data = read_toml(path)
            if data.get("role") not in LEGACY_ROLES:
                continue
            load(paths, path.stem)
        except (ConfigError, OSError):
            continue
        write_toml(path, {**data, "role": current_role(data["role"])})
        rewritten.append(path.stem)
    return rewritten


def delete(paths: Paths, name: str) -> bool:
    """Remove the link file and its secrets; the .toml goes first so no reader
    ever finds a link whose keys are already gone."""
    existed = remove(paths.link_file(name))
    remove(paths.link_key(name))
    remove(paths.link_psk(name))
    return existed
