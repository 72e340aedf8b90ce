"""Allocation of a link's interface name, /31 (and /127) and listen port.

allocate() is a pure function of what is already used. Allocator wraps it in
a file lock and a reservation file per pending link, so concurrent joins
never get the same resources; it is the only writer of reservation files.

A reservation is held by whoever is making the link, for as long as that
work lasts: an flock on the reservation's own lock file, taken by the
thread that reserved (its own open file description) and dropped by
release(), or by the kernel when the process dies. A reservation whose
lock is free has no holder any more (a join killed half-way, a request
that died) and is reclaimed at once by the next reserve() or reclaim().
Expiry (RESERVATION_TTL) stays as the last resort, and is all that frees a
reservation made without a holder (wgmesh-allocator reserve, which exits
at once) or written before reservations had holders.
"""

import fcntl
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

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
    offset: int | None  # only the listener owns the /31
    created: float
    # True while a process holds the reservation's lock file (see above).
    held: bool = False

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
    port: int | None = None,
) -> Reservation:
    """The first free resources for a link to peer_id (port: the listen port
    asked for, instead of the first free one), or AllocationError."""
    name = linkfile.link_name(peer_id, family)
    if name in usage.names:
        raise AllocationError(f"a link to node {peer_id} over IPv{family} already exists or is being made ({name})")
    if port is not None:
        if not 1 <= port <= 65535:
            raise AllocationError(f"--port {port} is out of range (1-65535)")
        if port in usage.ports:
            raise AllocationError(f"port {port} is already used by another link")
    else:
        port = next((p for p in range(port_base, min(port_base + PORT_RANGE, 65536)) if p not in usage.ports), None)
    if port is None:
        raise AllocationError(f"no free listen port in {port_base}-{port_base + PORT_RANGE - 1}")
    offset = None
    if role == linkfile.LISTENER:
        offset = next((o for o in plan.link_offsets() if o not in usage.offsets), None)
        if offset is None:
            raise AllocationError("no free link address left in this node's block")
    return Reservation(name, peer_id, role, family, port, offset, now)


def usage_of(links: list[linkfile.Link], reservations: list[Reservation]) -> Usage:
    return Usage(
        names=frozenset([l.name for l in links] + [r.name for r in reservations]),
        ports=frozenset([l.listen_port for l in links] + [r.listen_port for r in reservations]),
        offsets=frozenset(
            [l.offset for l in links if l.role == linkfile.LISTENER] + [r.offset for r in reservations if r.offset is not None]
        ),
    )


# The lock files this process holds, by path: the Allocator is made anew
# for each use (Node.allocator), the hold outlives it.
_holds: dict[Path, int] = {}
_holds_lock = threading.Lock()


def _take_hold(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # The allocator's lock is held and the name is free, so only a
        # holder whose reservation file was lost (unreadable, removed by
        # hand) can still have it: that join is not over.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AllocationError(f"{path.stem} is being made by another join (it holds {path})") from None
    except OSError:
        os.close(fd)
        raise
    with _holds_lock:
        stale = _holds.pop(path, None)
        _holds[path] = fd
    if stale is not None:
        os.close(stale)


def _drop_hold(path: Path) -> None:
    with _holds_lock:
        fd = _holds.pop(path, None)
    # Unlinked before it is unlocked: whoever tests it next finds no file.
    path.unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)


def holder_alive(path: Path) -> bool:
    """True while some open file description (this process's included)
    holds the flock on path."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def is_stale(reservation: Reservation, holder_alive: bool, now: float, ttl: float) -> bool:
    """Whether a reservation is to be reclaimed (pure): its holder is gone,
    or, the last resort, it is older than ttl."""
    return (reservation.held and not holder_alive) or now - reservation.created > ttl


def rewrite_legacy_roles(paths: Paths) -> list[str]:
    """Rewrite the reservation files that still say a legacy role word (the
    migration to schema 3), under the allocator's lock so no reserve()
    interleaves; held ones stay held (their lock files are untouched). The
    names rewritten."""
    rewritten = []
    directory = paths.reservations_dir
    if not directory.is_dir():
        return rewritten
    with file_lock(paths.lock_file):
        for path in sorted(directory.glob("*.toml")):
            try:
                data = read_toml(path)
            except (ConfigError, OSError):
                continue  # not a reservation: reclaim() removes it
            if data.get("role") in linkfile.LEGACY_ROLES:
                write_toml(path, {**data, "role": linkfile.current_role(data["role"])})
                rewritten.append(path.stem)
    return rewritten


class Allocator:
    def __init__(self, paths: Paths, plan: MeshPlan, port_base: int, ttl: float = RESERVATION_TTL):
        self.paths = paths
        self.plan = plan
        self.port_base = port_base
        self.ttl = ttl

    def lock(self):
        return file_lock(self.paths.lock_file)

    def _file(self, name: str) -> Path:
        return self.paths.reservations_dir / f"{name}.toml"

    def _hold_file(self, name: str) -> Path:
        return self.paths.reservations_dir / f"{name}.lock"

    def _read_all(self) -> tuple[list[Reservation], list[Path]]:
        """(the reservations on disk, the files that are none)."""
        found, unreadable = [], []
        directory = self.paths.reservations_dir
        if not directory.is_dir():
            return found, unreadable
        for path in sorted(directory.glob("*.toml")):
            try:
                data = read_toml(path)
                # TOML has no null: a dialer's reservation is written without
                # its offset (None), and must read back as one, not be dropped.
                data.setdefault("offset", None)
                # One written before schema 3 (a join that spans the upgrade)
                # still belongs to its holder.
                data["role"] = linkfile.current_role(data.get("role"))
                found.append(Reservation(**data))
            except (ConfigError, TypeError, OSError):
                unreadable.append(path)
        return found, unreadable

    def _stale(self, reservation: Reservation, now: float) -> bool:
        alive = reservation.held and holder_alive(self._hold_file(reservation.name))
        return is_stale(reservation, alive, now, self.ttl)

    def reservations(self, now: float | None = None) -> list[Reservation]:
        """Live reservations (read only: reclaim() deletes the others)."""
        now = time.time() if now is None else now
        return [r for r in self._read_all()[0] if not self._stale(r, now)]

    def _reclaim_locked(self, now: float) -> list[Reservation]:
        found, unreadable = self._read_all()
        for path in unreadable:
            remove(path)
        live = []
        for reservation in found:
            if self._stale(reservation, now):
                remove(self._file(reservation.name))
                self._hold_file(reservation.name).unlink(missing_ok=True)
            else:
                live.append(reservation)
        return live

    def reclaim(self, now: float | None = None) -> list[str]:
        """Delete every reservation whose holder is gone (or that expired);
        the names reclaimed. For whatever is about to make links: a connect,
        a mesh pass."""
        now = time.time() if now is None else now
        with self.lock():
            before = {r.name for r in self._read_all()[0]}
            live = {r.name for r in self._reclaim_locked(now)}
        return sorted(before - live)

    def reserve(self, peer_id: int, role: str, family: int, port: int | None = None,
                hold: bool = True) -> Reservation:
        """Reserve a link's resources (port: this listen port, checked under
        the same lock). With hold, the calling process holds the reservation
        until release(); without, only expiry frees it."""
        with self.lock():
            now = time.time()
            links, _ = linkfile.load_all(self.paths)
            # A link file that does not parse still holds its name.
            names_on_disk = [p.stem for p in self.paths.links_dir.glob("*.toml")] if self.paths.links_dir.is_dir() else []
            usage = usage_of(links, self._reclaim_locked(now))
            usage = Usage(usage.names | frozenset(names_on_disk), usage.ports, usage.offsets)
            reservation = replace(allocate(self.plan, self.port_base, usage, peer_id, role, family, now, port),
                                  held=hold)
            if hold:
                self.paths.reservations_dir.mkdir(parents=True, exist_ok=True)
                _take_hold(self._hold_file(reservation.name))
            try:
                write_toml(self._file(reservation.name), reservation.to_dict())
            except BaseException:
                _drop_hold(self._hold_file(reservation.name))
                raise
            return reservation

    def release(self, name: str) -> bool:
        """Drop a reservation (the link was written, or the join failed)."""
        with self.lock():
            existed = remove(self._file(name))
            _drop_hold(self._hold_file(name))
            return existed
