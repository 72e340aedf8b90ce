"""Upgrades of on-disk state between package versions.

Each migration takes the node from schema N-1 to N and must be idempotent;
the schema applied last is kept in /var/lib/wgmesh/schema. The package's
postinst runs `wgmesh migrate`, so an upgrade never needs a manual step.
"""

from collections.abc import Callable

from . import allocation, linkfile, vxlan
from . import config as node_config
from .errors import ConfigError
from .paths import Paths
from .tomlio import write_atomic


def _schema_1(paths: Paths) -> None:
    """The first schema: check that what is on disk is readable as such."""
    node_config.load(paths.config_file)
    _, problems = linkfile.load_all(paths)
    if problems:
        raise ConfigError("; ".join(problems))


def _schema_2(paths: Paths) -> None:
    """Node 0's VXLAN addresses moved off host part 0 (the IPv4 network
    address, the IPv6 subnet-router anycast): the running overlay devices
    drop the old address and take the new one. Peers need nothing: their
    forwarding entries name node 0's loopback, which did not move."""
    config = node_config.load(paths.config_file)
    if config.initialised:
        vxlan.refresh_addresses(config)


def _schema_3(paths: Paths) -> None:
    """The link roles "server" and "client" became "listener" and "dialer"
    (the words server and client are the join server's and the client
    nodes'): link files and pending reservations say the new words."""
    linkfile.rewrite_legacy_roles(paths)
    allocation.rewrite_legacy_roles(paths)


MIGRATIONS: list[tuple[int, Callable[[Paths], None]]] = [(1, _schema_1), (2, _schema_2), (3, _schema_3)]
CURRENT = MIGRATIONS[-1][0]


def schema_file(paths: Paths):
    return paths.schema_file


def applied(paths: Paths) -> int:
    try:
        return int(schema_file(paths).read_text().strip())
    except (OSError, ValueError):
        return 0


def mark_current(paths: Paths) -> None:
    write_atomic(schema_file(paths), f"{CURRENT}\n".encode())


def migrate(paths: Paths) -> list[int]:
    """Apply every pending migration in order; returns the ones applied."""
    done = []
    current = applied(paths)
    if current > CURRENT:
        raise ConfigError(f"this node's state is schema {current}, newer than this wgmesh ({CURRENT}): "
                          "install the newer wgmesh again")
    for version, migration in MIGRATIONS:
        if version <= current:
            continue
        migration(paths)
        write_atomic(schema_file(paths), f"{version}\n".encode())
        done.append(version)
    return done
