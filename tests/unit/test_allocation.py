"""Allocation of link names, /31 offsets and ports, alone and under contention."""

import multiprocessing
import os
import signal
import threading
import time

import pytest
from click.testing import CliRunner

from unit_helpers import make_link, random_key
from wgmesh_common import linkfile
from wgmesh_common.addressing import MeshPlan
from wgmesh_common.allocation import Allocator, Reservation, Usage, allocate, usage_of
from wgmesh_common.commands.allocator import main as allocator_main
from wgmesh_common.errors import AllocationError
from wgmesh_common.paths import Paths

EMPTY = Usage(frozenset(), frozenset(), frozenset())


def usage(names=(), ports=(), offsets=()) -> Usage:
    return Usage(frozenset(names), frozenset(ports), frozenset(offsets))


def test_allocate_on_an_empty_node(plan):
    r = allocate(plan, 51820, EMPTY, 2, "listener", 4, 123.0)
    assert r == Reservation("wgm2", 2, "listener", 4, 51820, 4, 123.0)


def test_allocate_is_pure(plan):
    used = usage(["wgm4"], [51820], [4])
    first = allocate(plan, 51820, used, 2, "listener", 4, 1.0)
    assert allocate(plan, 51820, used, 2, "listener", 4, 1.0) == first
    assert used == usage(["wgm4"], [51820], [4])


@pytest.mark.parametrize("ports, offsets, port, offset", [
    ([51820], [4], 51821, 6),
    ([51821], [6], 51820, 4),  # the first free one, not the one after the highest
    ([51820, 51821, 51823], [4, 6, 10], 51822, 8),
])
def test_allocate_picks_the_first_free_port_and_offset(plan, ports, offsets, port, offset):
    r = allocate(plan, 51820, usage(ports=ports, offsets=offsets), 2, "listener", 4, 0.0)
    assert (r.listen_port, r.offset) == (port, offset)


def test_a_client_side_link_takes_no_offset(plan):
    r = allocate(plan, 51820, usage(offsets=plan.link_offsets()), 2, "dialer", 4, 0.0)
    assert r.offset is None and r.role == "dialer"


def test_v6_transport_gets_its_own_name(plan):
    r = allocate(plan, 51820, usage(names=["wgm2"]), 2, "listener", 6, 0.0)
    assert r.name == "wgm2v6"


def test_a_name_in_use_is_refused_clearly(plan):
    with pytest.raises(AllocationError) as caught:
        allocate(plan, 51820, usage(names=["wgm2"]), 2, "listener", 4, 0.0)
    assert str(caught.value) == "a link to node 2 over IPv4 already exists or is being made (wgm2)"


def test_ports_run_out(plan):
    with pytest.raises(AllocationError, match="no free listen port in 51820-55915"):
        allocate(plan, 51820, usage(ports=range(51820, 51820 + 4096)), 2, "dialer", 4, 0.0)


def test_ports_never_go_past_65535(plan):
    r = allocate(plan, 65000, usage(ports=range(65000, 65535)), 2, "dialer", 4, 0.0)
    assert r.listen_port == 65535
    with pytest.raises(AllocationError, match="no free listen port"):
        allocate(plan, 65000, usage(ports=range(65000, 65536)), 2, "dialer", 4, 0.0)


def test_offsets_run_out(plan):
    with pytest.raises(AllocationError, match="no free link address left"):
        allocate(plan, 51820, usage(offsets=plan.link_offsets()), 2, "listener", 4, 0.0)
    last = list(plan.link_offsets())[:-1]
    assert allocate(plan, 51820, usage(offsets=last), 2, "listener", 4, 0.0).offset == 510


def test_usage_of_counts_links_and_reservations():
    links = [make_link(), make_link(name="wgm4", peer_id=4, role="dialer", endpoint="192.0.2.1:1", offset=8,
                                    listen_port=51821)]
    reservations = [Reservation("wgm6", 6, "listener", 4, 51822, 6, 0.0),
                    Reservation("wgm8", 8, "dialer", 4, 51823, None, 0.0)]
    u = usage_of(links, reservations)
    assert u.names == {"wgm2", "wgm4", "wgm6", "wgm8"}
    assert u.ports == {51820, 51821, 51822, 51823}
    # A client link's offset is in the other node's block: it is not ours.
    assert u.offsets == {4, 6}


@pytest.fixture
def allocator(paths, plan) -> Allocator:
    return Allocator(paths, plan, 51820)


def test_reserve_writes_a_reservation_and_skips_used_resources(allocator, paths):
    first = allocator.reserve(2, "listener", 4)
    second = allocator.reserve(4, "listener", 4)
    assert (first.listen_port, first.offset) == (51820, 4)
    assert (second.listen_port, second.offset) == (51821, 6)
    assert sorted(p.name for p in paths.reservations_dir.glob("*.toml")) == ["wgm2.toml", "wgm4.toml"]
    assert allocator.reservations() == [first, second]


def test_client_reservations_are_kept_and_count(allocator):
    first = allocator.reserve(2, "dialer", 4)
    assert allocator.reservations() == [first]
    second = allocator.reserve(4, "dialer", 4)
    assert second.listen_port != first.listen_port
    with pytest.raises(AllocationError, match="wgm2"):
        allocator.reserve(2, "dialer", 4)


def test_reserve_respects_existing_link_files(allocator, paths):
    linkfile.save(paths, make_link(), random_key(), random_key())
    r = allocator.reserve(4, "listener", 4)
    assert (r.listen_port, r.offset) == (51821, 6)
    with pytest.raises(AllocationError, match="node 2"):
        allocator.reserve(2, "listener", 4)


def test_a_malformed_link_file_still_holds_its_name(allocator, paths):
    paths.links_dir.mkdir(parents=True)
    paths.link_file("wgm2").write_text("broken = \n")
    with pytest.raises(AllocationError, match="wgm2"):
        allocator.reserve(2, "listener", 4)


def test_release(allocator, paths):
    reservation = allocator.reserve(2, "listener", 4)
    assert allocator.release(reservation) is True
    assert allocator.release(reservation) is False
    assert allocator.reservations() == []
    # The released resources are free again.
    assert allocator.reserve(4, "listener", 4).offset == 4


def test_expired_reservations_are_dropped(paths, plan):
    """Expiry, the last resort, for a reservation made without a holder."""
    allocator = Allocator(paths, plan, 51820, ttl=60)
    r = allocator.reserve(2, "listener", 4, hold=False)
    assert allocator.reservations(now=r.created + 59) == [r]
    assert allocator.reservations(now=r.created + 61) == []
    assert allocator.reclaim(now=r.created + 61) == ["wgm2"]
    # ... and deleted, so a later reader does not see it either.
    assert not (paths.reservations_dir / "wgm2.toml").exists()
    assert allocator.reserve(2, "listener", 4).offset == 4


def test_an_expired_reservation_frees_its_name_for_reserve(paths, plan):
    allocator = Allocator(paths, plan, 51820, ttl=0.05)
    allocator.reserve(2, "listener", 4, hold=False)
    time.sleep(0.1)
    assert allocator.reserve(2, "listener", 4).name == "wgm2"


def test_a_live_holders_reservation_never_expires(paths, plan):
    allocator = Allocator(paths, plan, 51820, ttl=0.05)
    allocator.reserve(2, "listener", 4)
    time.sleep(0.1)
    with pytest.raises(AllocationError, match="wgm2"):
        allocator.reserve(2, "listener", 4)


def test_an_unreadable_reservation_is_dropped(allocator, paths):
    paths.reservations_dir.mkdir(parents=True)
    (paths.reservations_dir / "wgm2.toml").write_text("name = \n")
    (paths.reservations_dir / "wgm4.toml").write_text('name = "wgm4"\n')
    assert allocator.reservations() == []
    allocator.reclaim()
    assert list(paths.reservations_dir.iterdir()) == []


def _assert_distinct(reservations: list[Reservation], count: int) -> None:
    assert len(reservations) == count
    names = {r.name for r in reservations}
    ports = {r.listen_port for r in reservations}
    offsets = [r.offset for r in reservations if r.offset is not None]
    assert len(names) == count
    assert len(ports) == count
    assert len(set(offsets)) == len(offsets)


def _peer_role(index: int) -> tuple[int, str]:
    # Mix both roles: listeners take an offset, dialers only a port.
    return 2 * (index + 1), ("listener" if index % 3 else "dialer")


def test_concurrent_reservations_from_threads_are_distinct(paths, plan):
    count = 20
    barrier = threading.Barrier(count)
    results: list[Reservation] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        peer, role = _peer_role(index)
        allocator = Allocator(paths, plan, 51820)
        barrier.wait()
        try:
            results.append(allocator.reserve(peer, role, 4))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    _assert_distinct(results, count)
    assert len(Allocator(paths, plan, 51820).reservations()) == count


def _process_worker(root: str, index: int, barrier, queue) -> None:
    peer, role = _peer_role(index)
    allocator = Allocator(Paths(__import__("pathlib").Path(root)), MeshPlan.default(), 51820)
    barrier.wait()
    try:
        queue.put(allocator.reserve(peer, role, 4).to_dict())
    except BaseException as error:  # noqa: BLE001 - the parent process reports it
        queue.put({"error": repr(error)})
    # A reservation lasts as long as its holder: stay until all have reserved.
    barrier.wait()


def test_concurrent_reservations_from_processes_are_distinct(paths):
    count = 8
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    queue = context.Queue()
    processes = [context.Process(target=_process_worker, args=(str(paths.root), i, barrier, queue))
                 for i in range(count)]
    for p in processes:
        p.start()
    answers = [queue.get(timeout=30) for _ in range(count)]
    for p in processes:
        p.join(30)
    assert [a for a in answers if "error" in a] == []
    _assert_distinct([Reservation(**a) for a in answers], count)


def test_concurrent_reservations_for_the_same_peer_give_exactly_one(paths, plan):
    count = 10
    barrier = threading.Barrier(count)
    outcomes: list[str] = []

    def worker() -> None:
        allocator = Allocator(paths, plan, 51820)
        barrier.wait()
        try:
            allocator.reserve(2, "listener", 4)
            outcomes.append("ok")
        except AllocationError:
            outcomes.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["ok"] + ["refused"] * (count - 1)


EXPLICIT_PORT = 40000


def test_two_allocations_of_one_explicit_port_at_once_give_it_to_one(node, monkeypatch):
    """Two joins to different peers asking for the same --port at the same
    moment: exactly one gets it, the other a clear error.

    Each write of a reservation for that port first waits for the other
    allocation at a barrier. Where the check and the write are not under one
    lock (join._with_port before), both pass the check before either writes,
    and both get the port; under the allocator's lock the second waits on
    the lock, the barrier breaks (its timeout only ends the wait, nothing is
    asserted on time) and the second finds the port taken."""
    from wgmesh_common import allocation, tomlio

    original = tomlio.write_toml
    barrier = threading.Barrier(2)

    def write_after_meeting(path, data, *args, **kwargs):
        if data.get("listen_port") == EXPLICIT_PORT:
            try:
                barrier.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
        return original(path, data, *args, **kwargs)

    monkeypatch.setattr(allocation, "write_toml", write_after_meeting)
    monkeypatch.setattr(tomlio, "write_toml", write_after_meeting)
    results, errors = {}, {}

    def allocate_with_port(peer: int) -> None:
        try:
            results[peer] = reserve_with_port(node, peer, EXPLICIT_PORT)
        except AllocationError as error:
            errors[peer] = str(error)

    threads = [threading.Thread(target=allocate_with_port, args=(peer,)) for peer in (2, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 1, f"both allocations got port {EXPLICIT_PORT}: {results}"
    assert list(errors.values()) == [f"port {EXPLICIT_PORT} is already used by another link"]
    held = [r for r in node.allocator.reservations() if r.listen_port == EXPLICIT_PORT]
    assert len(held) == 1


def reserve_with_port(node, peer: int, port: int):
    return node.allocator.reserve(peer, "dialer", 4, port=port)


def _reserve_and_wait(root: str, reserved) -> None:
    allocator = Allocator(Paths(__import__("pathlib").Path(root)), MeshPlan.default(), 51820)
    allocator.reserve(2, "dialer", 4)
    reserved.set()
    # Holds the reservation until killed.
    threading.Event().wait()


@pytest.fixture
def holder(paths):
    """A child process that reserved wgm2 and holds it (until killed)."""
    context = multiprocessing.get_context("fork")
    reserved = context.Event()
    process = context.Process(target=_reserve_and_wait, args=(str(paths.root), reserved))
    process.start()
    try:
        assert reserved.wait(30), "the child never reserved"
        yield process
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join(30)


def test_a_reservation_whose_holder_was_killed_is_reclaimed_at_once(paths, plan, holder):
    allocator = Allocator(paths, plan, 51820)
    assert [r.name for r in allocator.reservations()] == ["wgm2"]
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    # Long before any expiry: the kernel dropped the dead holder's lock.
    assert allocator.reservations() == []
    reservation = allocator.reserve(2, "dialer", 4)
    assert reservation.name == "wgm2" and reservation.listen_port == 51820
    assert sorted(p.name for p in paths.reservations_dir.iterdir()) == ["wgm2.lock", "wgm2.toml"]


def test_reclaim_reports_what_a_killed_holder_left(paths, plan, holder):
    allocator = Allocator(paths, plan, 51820)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    assert allocator.reclaim() == ["wgm2"]
    assert list(paths.reservations_dir.iterdir()) == []


def test_a_live_holders_reservation_is_not_reclaimed(paths, plan, holder):
    allocator = Allocator(paths, plan, 51820)
    assert allocator.reclaim() == []
    with pytest.raises(AllocationError, match="being made"):
        allocator.reserve(2, "dialer", 4)
    assert [r.name for r in allocator.reservations()] == ["wgm2"]


def test_a_reservation_held_by_another_thread_of_this_process_is_live(allocator):
    """The join helper serves each request on a thread: one request's
    reservation is not another's to reclaim."""
    reservation = allocator.reserve(2, "listener", 4)
    other = {}
    thread = threading.Thread(target=lambda: other.update(reclaimed=allocator.reclaim()))
    thread.start()
    thread.join(30)
    assert other["reclaimed"] == []
    assert allocator.release(reservation) is True
    # Released: nothing of it is left, lock file included.
    assert list(allocator.paths.reservations_dir.iterdir()) == []


def test_a_reservation_without_a_holder_lives_until_it_expires(paths, plan):
    """wgmesh-allocator reserve exits at once: only expiry frees its reservation."""
    allocator = Allocator(paths, plan, 51820, ttl=60)
    r = allocator.reserve(2, "dialer", 4, hold=False)
    assert allocator.reclaim(now=r.created + 59) == []
    assert allocator.reclaim(now=r.created + 61) == ["wgm2"]


def test_is_stale():
    from wgmesh_common.allocation import is_stale

    held = Reservation("wgm2", 2, "dialer", 4, 51820, None, 100.0, held=True)
    unheld = Reservation("wgm2", 2, "dialer", 4, 51820, None, 100.0)
    assert is_stale(held, holder_alive=False, now=101, ttl=120)
    assert not is_stale(held, holder_alive=True, now=101, ttl=120)
    assert not is_stale(held, holder_alive=True, now=10_000, ttl=120)  # a live holder's never expires
    assert not is_stale(unheld, holder_alive=False, now=101, ttl=120)
    assert is_stale(unheld, holder_alive=False, now=221, ttl=120)


def test_a_holder_whose_reservation_file_was_lost_still_holds_the_name(allocator, paths):
    allocator.reserve(2, "dialer", 4)
    (paths.reservations_dir / "wgm2.toml").unlink()
    other = {}

    def reserve_elsewhere() -> None:
        try:
            Allocator(paths, allocator.plan, 51820).reserve(2, "dialer", 4)
        except AllocationError as error:
            other["error"] = str(error)

    thread = threading.Thread(target=reserve_elsewhere)
    thread.start()
    thread.join(30)
    assert other["error"].startswith("wgm2 is being made by another join")


def test_a_join_that_ends_late_never_releases_another_holders_reservation(allocator, paths):
    """A holder whose reservation was reclaimed (its file lost) and then
    taken by another join must not free that join's when it ends."""
    first = allocator.reserve(2, "dialer", 4)
    # The first join's files go (by hand, a bug): the name is taken again by a second join.
    (paths.reservations_dir / "wgm2.toml").unlink()
    allocator.release(first)
    second = allocator.reserve(2, "dialer", 4)
    assert allocator.release(first) is False  # the late end of the first join
    assert [r.name for r in allocator.reservations()] == ["wgm2"]
    with pytest.raises(AllocationError, match="wgm2"):
        allocator.reserve(2, "dialer", 4)
    assert allocator.release(second) is True
    assert allocator.reservations() == []


def test_discard_drops_a_reservation_without_a_holder_but_not_a_live_holders(allocator):
    allocator.reserve(2, "dialer", 4, hold=False)
    assert allocator.discard("wgm2") is True
    assert allocator.discard("wgm2") is False
    allocator.reserve(4, "dialer", 4)
    with pytest.raises(AllocationError, match="held by a running join"):
        allocator.discard("wgm4")


def test_a_reservation_file_under_another_name_is_not_read_as_that_name(allocator, paths):
    allocator.reserve(2, "dialer", 4)
    (paths.reservations_dir / "evil.toml").write_text((paths.reservations_dir / "wgm2.toml").read_text())
    allocator.reclaim()
    # The copy went as unreadable; wgm2's own file, lock and all, stays.
    assert sorted(p.name for p in paths.reservations_dir.iterdir()) == ["wgm2.lock", "wgm2.toml"]


def test_the_allocator_command_takes_the_role_words(node):
    def reserve(peer: str, role: str):
        return CliRunner(mix_stderr=False).invoke(allocator_main, ["reserve", "--peer", peer, "--role", role, "--json"],
                                                  env={"WGMESH_ROOT": str(node.paths.root)})

    listener = reserve("2", "listener")
    assert listener.exit_code == 0, listener.stderr
    assert '"role": "listener"' in listener.stdout and '"listener4": "10.0.0.4"' in listener.stdout
    assert '"dialer4": "10.0.0.5"' in listener.stdout
    dialer = reserve("4", "dialer")
    assert dialer.exit_code == 0 and '"role": "dialer"' in dialer.stdout and "listener4" not in dialer.stdout
    # The old words were the join server's and the client nodes' too: gone from the command line.
    assert reserve("6", "server").exit_code == 2
