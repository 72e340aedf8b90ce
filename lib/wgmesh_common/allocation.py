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
A live holder's reservation never expires (the holder's own timeouts bound
its work); expiry (RESERVATION_TTL) is the last resort for a reservation
made without a holder (wgmesh-allocator reserve, which exits at once) or
written before reservations had holders. Each held reservation carries its
holder's random token: release() drops a reservation only for the holder
that made it, so a join that ended late never frees another's.
"""

import fcntl
import os
import secrets
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
    # The holder's token: who may release it ("" for one made without a holder).
    holder: str = ""

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


# The lock files this process holds, by path, with the holder's token: the
# Allocator is made anew for each use (Node.allocator), the hold outlives it.
_holds: dict[Path, tuple[str, int]] = {}
_holds_lock = threading.Lock()
# Lock files are root's, in a root-only directory; never follow a link there.
_LOCK_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


def _take_hold(path: Path, holder: str) -> None:
    fd = os.open(path, _LOCK_FLAGS | os.O_CREAT, 0o600)
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
        # A hold of this path by this process that the lock no longer
        # covers (its file was reclaimed): its descriptor only leaks.
        stale = _holds.pop(path, None)
        _holds[path] = (holder, fd)
    if stale is not None:
        os.close(stale[1])


def _drop_hold(path: Path, holder: str) -> None:
    """Drop this process's hold of path, if it is holder's."""
    with _holds_lock:
        mine = _holds.get(path)
        if mine is None or mine[0] != holder:
            return
        del _holds[path]
    # Unlinked before it is unlocked: whoever tests it next finds no file.
    path.unlink(missing_ok=True)
    os.close(mine[1])


def holder_alive(path: Path) -> bool:
    """True while some open file description (this process's included)
    holds the flock on path."""
    try:
        fd = os.open(path, _LOCK_FLAGS)
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
    or, the last resort for one made without a holder, it is older than ttl.
    A live holder's never is: another join must not take its name while it
    still works (its own timeouts bound that work)."""
    if reservation.held:
        return not holder_alive
    return now - reservation.created > ttl


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
                reservation = Reservation(**data)
            except (ConfigError, TypeError, OSError):
                unreadable.append(path)
                continue
            # The name inside says which files are its own: only the one it is in.
            if reservation.name != path.stem:
                unreadable.append(path)
            else:
                found.append(reservation)
        return found, unreadable

    def _on_disk(self, name: str) -> Reservation | None:
        return next((r for r in self._read_all()[0] if r.name == name), None)

    def _stale(self, reservation: Reservation, now: float) -> bool:
        alive = reservation.held and holder_alive(self._hold_file(reservation.name))
        return is_stale(reservation, alive, now, self.ttl)

    def reservations(self, now: float | None = None) -> list[Reservation]:
        """Live reservations (read only: reclaim() deletes the others)."""
        now = time.time() if now is None else now
        return [r for r in self._read_all()[0] if not self._stale(r, now)]

    def wait_released(self, name: str, timeout: float, interval: float = 0.1) -> bool:
        """Wait until no live reservation holds name (its maker finished or
        died); False if one still does after timeout."""
        deadline = time.monotonic() + timeout
        while any(r.name == name for r in self.reservations()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

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
                                  held=hold, holder=secrets.token_hex(8) if hold else "")
            if hold:
                self.paths.reservations_dir.mkdir(parents=True, exist_ok=True)
                _take_hold(self._hold_file(reservation.name), reservation.holder)
            try:
                write_toml(self._file(reservation.name), reservation.to_dict())
            except BaseException:
                _drop_hold(self._hold_file(reservation.name), reservation.holder)
                raise
            return reservation

    def release(self, reservation: Reservation) -> bool:
        """Drop the caller's own reservation (the link was written, or the
        join failed); one of the same name made by another holder stays."""
        with self.lock():
            current = self._on_disk(reservation.name)
            existed = current is not None and current.holder == reservation.holder
            if existed:
                remove(self._file(reservation.name))
            _drop_hold(self._hold_file(reservation.name), reservation.holder)
            return existed

    def discard(self, name: str) -> bool:
        """Drop a reservation made without a holder (wgmesh-allocator
        release); AllocationError for one a running join holds."""
        with self.lock():
            current = self._on_disk(name)
            if current is None:
                return False
            if current.held and holder_alive(self._hold_file(name)):
                raise AllocationError(f"{name} is held by a running join; it is released when that join ends")
            remove(self._file(name))
            self._hold_file(name).unlink(missing_ok=True)
            return True
