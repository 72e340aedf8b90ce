"""Allocation of a link's interface name, /31 (and /127) and listen port.

allocate() is a pure function of what is already used. Allocator wraps it in
a file lock and a reservation file per pending link, so concurrent joins
never get the same resources, and a join that dies half-way leaves only a
reservation that expires on its own.
"""

import time
from dataclasses import asdict, dataclass

from . import linkfile
from .addressing import MeshPlan
from .errors import AllocationError, ConfigError
from .paths import Paths
from .tomlio import file_lock, read_toml, remove, write_toml

PORT_RANGE = 4096
RESERVATION_TTL = 120.0


@dataclass(frozen=True)
class Reservation:
    name: str
    peer_id: int
    role: str
    family: int
    listen_port: int
    offset: int | None  # only the serving side owns the /31
    created: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Usage:
    names: frozenset[str]
    ports: frozenset[int]
    offsets: frozenset[int]


def allocate(
    plan: MeshPlan,
    port_base: int,
    usage: Usage,
    peer_id: int,
    role: str,
    family: int,
    now: float,
) -> Reservation:
    """The first free resources for a link to peer_id, or AllocationError."""
    name = linkfile.link_name(peer_id, family)
    if name in usage.names:
        raise AllocationError(f"a link to node {peer_id} over IPv{family} already exists or is being made ({name})")
    port = next((p for p in range(port_base, min(port_base + PORT_RANGE, 65536)) if p not in usage.ports), None)
    if port is None:
        raise AllocationError(f"no free listen port in {port_base}-{port_base + PORT_RANGE - 1}")
    offset = None
    if role == "server":
        offset = next((o for o in plan.link_offsets() if o not in usage.offsets), None)
        if offset is None:
            raise AllocationError("no free link address left in this node's block")
    return Reservation(name, peer_id, role, family, port, offset, now)


def usage_of(links: list[linkfile.Link], reservations: list[Reservation]) -> Usage:
    return Usage(
        names=frozenset([l.name for l in links] + [r.name for r in reservations]),
        ports=frozenset([l.listen_port for l in links] + [r.listen_port for r in reservations]),
        offsets=frozenset(
            [l.offset for l in links if l.role == "server"] + [r.offset for r in reservations if r.offset is not None]
        ),
    )


class Allocator:
    def __init__(self, paths: Paths, plan: MeshPlan, port_base: int, ttl: float = RESERVATION_TTL):
        self.paths = paths
        self.plan = plan
        self.port_base = port_base
        self.ttl = ttl

    def lock(self):
        return file_lock(self.paths.lock_file)

    def reservations(self, now: float | None = None) -> list[Reservation]:
        """Live reservations; expired ones are deleted as they are found."""
        now = time.time() if now is None else now
        result = []
        directory = self.paths.reservations_dir
        if not directory.is_dir():
            return result
        for path in sorted(directory.glob("*.toml")):
            try:
                data = read_toml(path)
                # TOML has no null: a client-side reservation is written without
                # its offset (None), and must read back as one, not be dropped.
                data.setdefault("offset", None)
                reservation = Reservation(**data)
            except (ConfigError, TypeError, OSError):
                remove(path)
                continue
            if now - reservation.created > self.ttl:
                remove(path)
                continue
            result.append(reservation)
        return result

    def reserve(self, peer_id: int, role: str, family: int) -> Reservation:
        with self.lock():
            now = time.time()
            links, _ = linkfile.load_all(self.paths)
            # A link file that does not parse still holds its name.
            names_on_disk = [p.stem for p in self.paths.links_dir.glob("*.toml")] if self.paths.links_dir.is_dir() else []
            usage = usage_of(links, self.reservations(now))
            usage = Usage(usage.names | frozenset(names_on_disk), usage.ports, usage.offsets)
            reservation = allocate(self.plan, self.port_base, usage, peer_id, role, family, now)
            write_toml(self.paths.reservations_dir / f"{reservation.name}.toml", reservation.to_dict())
            return reservation

    def release(self, name: str) -> bool:
        """Drop a reservation (the link was written, or the join failed)."""
        with self.lock():
            return remove(self.paths.reservations_dir / f"{name}.toml")
