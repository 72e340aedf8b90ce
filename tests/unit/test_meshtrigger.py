"""A new node in the routes starts one mesh pass per burst, soon; a pass
already running defers it; a failed pass is tried again with a backoff;
nodes seen before start nothing."""

from wgmesh_common.meshtrigger import CHECK, HOLD, MAX_BACKOFF, RETRY, MeshTrigger


def test_a_burst_of_new_nodes_starts_one_pass_hold_seconds_after_the_first():
    trigger = MeshTrigger().seen(frozenset({2}), now=100.0)
    assert not trigger.is_due(100.0 + HOLD / 2)
    trigger = trigger.seen(frozenset({2, 4}), now=100.0 + HOLD / 2)  # the burst goes on
    trigger = trigger.seen(frozenset({2, 4, 6}), now=100.0 + HOLD * 0.9)
    assert trigger.is_due(100.0 + HOLD)  # not pushed back by the later nodes
    trigger = trigger.started(frozenset({2, 4, 6}), 100.0 + HOLD)
    assert not trigger.is_due(1e9)
    assert not trigger.seen(frozenset({2, 4, 6}), now=200.0).is_due(1e9)  # the same nodes: nothing


def test_a_node_after_the_pass_started_starts_another():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0).started(frozenset({2}), 0.0)
    trigger = trigger.seen(frozenset({2, 8}), 10.0)
    assert trigger.is_due(10.0 + HOLD)


def test_a_running_pass_defers_the_start_and_the_new_nodes_stay_pending():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0)
    trigger = trigger.busy(HOLD)
    assert not trigger.is_due(HOLD + RETRY / 2)
    trigger = trigger.seen(frozenset({2}), HOLD + RETRY / 2)
    assert trigger.is_due(HOLD + RETRY)


def test_a_failed_pass_is_tried_again_with_a_growing_backoff_and_a_success_resets_it():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0).started(frozenset({2}), 1.0)
    assert not trigger.check_due(1.0 + CHECK / 2) and trigger.check_due(1.0 + CHECK)
    trigger = trigger.finished(None, 2.0)  # still running: look again later
    assert trigger.check_due(2.0 + CHECK) and not trigger.is_due(1e9)
    now = 3.0
    waits = []
    for _ in range(6):
        trigger = trigger.finished(False, now).seen(frozenset({2}), now)
        waits.append(trigger.due - now)
        now = trigger.due
        assert trigger.is_due(now)
        trigger = trigger.started(frozenset({2}), now)
    assert waits == [RETRY, 2 * RETRY, 3 * RETRY, 4 * RETRY, MAX_BACKOFF, MAX_BACKOFF] and MAX_BACKOFF == 5 * RETRY
    trigger = trigger.finished(True, now)
    assert trigger.failures == 0 and not trigger.seen(frozenset({2}), now).is_due(1e9)


def test_a_node_that_left_and_came_back_starts_a_pass():
    trigger = MeshTrigger().seen(frozenset({2, 4}), 0.0).started(frozenset({2, 4}), 0.0)
    trigger = trigger.seen(frozenset({2}), 5.0)
    assert not trigger.is_due(1e9)
    assert trigger.seen(frozenset({2, 4}), 9.0).is_due(9.0 + HOLD)


def test_nodes_that_leave_before_the_pass_cancel_it():
    trigger = MeshTrigger().seen(frozenset({2}), 0.0).seen(frozenset(), 0.5)
    assert not trigger.is_due(1e9)


def test_the_loop_sleeps_no_longer_than_until_the_trigger_needs_it():
    assert MeshTrigger().wait(0.0, 30.0) == 30.0
    trigger = MeshTrigger().seen(frozenset({2}), 10.0)
    assert trigger.wait(10.0, 30.0) == HOLD
    assert trigger.wait(10.0 + 5 * HOLD, 30.0) == 0.0
    assert trigger.started(frozenset({2}), 11.0).wait(11.0, 30.0) == CHECK


def test_a_new_node_during_a_failed_pass_backoff_is_not_kept_waiting_by_it():
    trigger = MeshTrigger(failures=3).seen(frozenset({2}), 0.0).started(frozenset({2}), 1.0)
    trigger = trigger.finished(False, 2.0)  # 4th failure in a row: a long backoff for node 2
    assert trigger.due - 2.0 == 4 * RETRY
    trigger = trigger.seen(frozenset({2}), 2.5)
    assert not trigger.is_due(2.5 + HOLD)  # node 2 alone waits its backoff out
    trigger = trigger.seen(frozenset({2, 6}), 3.0)  # a node never tried before
    assert trigger.is_due(3.0 + HOLD)
    trigger = trigger.started(frozenset({2, 6}), 3.0 + HOLD)  # one pass for both
    assert not trigger.seen(frozenset({2, 6}), 5.0).is_due(1e9)
