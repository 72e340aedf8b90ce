"""netlink.session(): the calls of one thread inside share one rtnetlink
socket (real ones, on this machine's own interfaces), and it is closed at
the end; another thread gets its own."""

import threading

from wgmesh_common import netlink


def test_calls_inside_a_session_share_one_socket_and_it_closes_after():
    with netlink.session():
        with netlink.handle() as first:
            assert netlink.interface_exists("lo")
        with netlink.handle() as second:
            assert second is first
        with netlink.session():  # noqa: SIM117 - nested on purpose: the outer one's is used
            with netlink.handle() as nested:
                assert nested is first
        assert netlink.routes(4, netlink.MAIN_TABLE) is not None
        with netlink.handle() as after_calls:
            assert after_calls is first and not first.closed
    assert first.closed
    with netlink.handle() as own:
        assert own is not first


def test_outside_a_session_each_call_has_its_own_socket():
    with netlink.handle() as one:
        pass
    with netlink.handle() as two:
        pass
    assert one is not two and one.closed and two.closed


def test_another_thread_does_not_use_this_threads_session():
    seen = {}

    def other() -> None:
        with netlink.handle() as ipr:
            seen["other"] = ipr

    with netlink.session(), netlink.handle() as mine:
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        assert seen["other"] is not mine and not mine.closed
