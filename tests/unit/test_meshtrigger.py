"""A new node in the routes starts one mesh pass per burst, soon; a pass
already running defers it; nodes seen before start nothing."""

from wgmesh_common.meshtrigger import HOLD, RETRY, MeshTrigger


def test_a_burst_of_new_nodes_starts_one_pass_hold_seconds_after_the_first():
    trigger = MeshTrigger().seen(frozenset({2}), now=100.0)
    assert not trigger.is_due(100.0 + HOLD / 2)
    trigger = trigger.seen(frozenset({2, 4}), now=100.0 + HOLD / 2)  # the burst goes on
    trigger = trigger.seen(frozenset({2, 4, 6}), now=100.0 + HOLD * 0.9)
    assert trigger.is_due(100.0 + HOLD)  # not pushed back by the later nodes
    trigger = trigger.started(frozenset({2, 4, 6}))
    assert not trigger.is_due(1e9)
    assert not trigger.seen(frozenset({2, 4, 6}), now=200.0).is_due(1e9)  # the same nodes: nothing


def test_a_node_after_the_pass_started_starts_another():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0).started(frozenset({2}))
    trigger = trigger.seen(frozenset({2, 8}), 10.0)
    assert trigger.is_due(10.0 + HOLD)


def test_a_running_pass_defers_the_start_and_the_new_nodes_stay_pending():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0)
    trigger = trigger.busy(HOLD)
    assert not trigger.is_due(HOLD + RETRY / 2)
    trigger = trigger.seen(frozenset({2}), HOLD + RETRY / 2)
    assert trigger.is_due(HOLD + RETRY)


def test_a_node_that_left_and_came_back_starts_a_pass():
    trigger = MeshTrigger().seen(frozenset({2, 4}), 0.0).started(frozenset({2, 4}))
    trigger = trigger.seen(frozenset({2}), 5.0)
    assert not trigger.is_due(1e9)
    assert trigger.seen(frozenset({2, 4}), 9.0).is_due(9.0 + HOLD)


def test_nodes_that_leave_before_the_pass_cancel_it():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0).seen(frozenset(), 0.5)
    assert not trigger.is_due(1e9)


def test_the_loop_sleeps_no_longer_than_until_the_trigger_is_due():
    assert MeshTrigger().wait(0.0, 30.0) == 30.0
    trigger = MeshTrigger().seen(frozenset({2}), 10.0)
    assert trigger.wait(10.0, 30.0) == HOLD
    assert trigger.wait(10.0 + 5 * HOLD, 30.0) == 0.0
