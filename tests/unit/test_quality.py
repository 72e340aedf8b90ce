"""The cost model (quality.decide) as tables: latency, loss, jitter (and
the host's own), down, hysteresis, hold-down, pins, clients, and windows
with nothing to go on."""

import random

import pytest

from wgmesh_common.bird import CLIENT_COST_PENALTY, MAX_COST
from wgmesh_common.quality import (
    HostJitter,
    LinkState,
    QualitySettings,
    Round,
    decide,
    estimate,
    host_jitter,
    initial_state,
)

S = QualitySettings()  # the shipped defaults
BASE = 100
NOW = 1_000_000.0
LONG_AGO = NOW - 3600  # a link that first answered an hour ago


def rounds(*specs, end=NOW, interval=S.interval, sent=S.echoes):
    """Rounds ending at `end`, one per spec, oldest first. A spec is
    (rtt ms, lost echoes) or (rtt, lost, jitter ms): the answered RTTs
    alternate rtt +- jitter/2, so the round's jitter is exactly `jitter`."""
    result = []
    for index, spec in enumerate(specs):
        rtt, lost, jitter = (*spec, 0.0)[:3]
        answered = sent - lost
        rtts = tuple(rtt + (jitter / 2 if i % 2 else -jitter / 2) for i in range(answered))
        result.append(Round(end - (len(specs) - 1 - index) * interval, sent, rtts))
    return result


def clean(n=6, rtt=1.0):
    return [(rtt, 0)] * n


def run(window, previous=None, pin=None, settings=S, client=False, now=NOW):
    previous = previous or initial_state(BASE, client)
    return decide(window, previous, pin, settings, BASE, client, now)


def settle(rtt=1.0):
    """A clean link's state once its first measurement is published."""
    decision = run(rounds(*clean(rtt=rtt)), LinkState(cost=1))
    assert decision.cost == BASE + round(rtt * S.ms_cost)
    return decision.state


def event_names(decision):
    return [e.name for e in decision.events]


# ------------------------------------------------------------- estimates

def test_estimate_is_robust_and_uses_only_the_recent_fresh_rounds():
    window = rounds((500.0, 20), (500.0, 0), (2.0, 0), (2.0, 2), (3.0, 0, 4.0))
    est = estimate(window, S, NOW, answered_since=LONG_AGO)
    assert est.rounds == 3
    assert est.rtt == 2.0  # the median: one round of 3 ms moves it nothing
    assert est.loss == pytest.approx(100 * 2 / 60)
    assert est.jitter == 0.0  # median of the rounds' jitter (0, 0, 4)
    assert not est.down
    stale = rounds((1.0, 0), end=NOW - S.stale_after - 1)
    assert estimate(stale, S, NOW).rounds == 0


@pytest.mark.parametrize("window, down", [
    (rounds((1.0, 0), (1.0, 20), (1.0, 20)), True),
    (rounds((1.0, 20), (1.0, 19), (1.0, 20)), False),  # one answer in the last two rounds
    (rounds((1.0, 20)), False),  # one round is not two
    (rounds((1.0, 20), (1.0, 20), (1.0, 0)), False),
])
def test_down_is_every_echo_of_the_last_two_rounds_unanswered(window, down):
    assert estimate(window, S, NOW, answered_since=LONG_AGO).down is down


# -------------------------------------------------------------- new links

def test_echoes_lost_before_a_new_link_first_answered_are_not_loss():
    # The peer's half appeared during the third round: silence, then part of a round.
    birth = run(rounds((1.0, 20), (1.0, 20), (1.0, 12), end=NOW - 30))
    assert birth.state.penalties == () and birth.state.answered_since == NOW - 30
    clean_since = run(rounds((1.0, 20), (1.0, 20), (1.0, 12), *clean(3)), birth.state)
    assert clean_since.state.penalties == () and clean_since.reason == "base"
    # Lossy from birth on: caught once three rounds after the first answer are there.
    lossy = run(rounds((1.0, 20), (1.0, 20), (1.0, 12), *[(1.0, 6)] * 3), birth.state)
    assert lossy.reason == "loss"


def test_a_link_that_never_answered_is_not_down_and_its_first_answer_is_remembered():
    silent = run(rounds((1.0, 20), (1.0, 20), (1.0, 20)))
    assert silent.state.penalties == () and silent.cost == BASE and silent.state.answered_since == 0
    answered = run(rounds((1.0, 20), (1.0, 20), (1.0, 20), (1.0, 3), end=NOW + 10), silent.state, now=NOW + 10)
    assert answered.state.answered_since == NOW + 10
    # Once the first answer slid out of the window, it is still the one remembered.
    later = NOW + 100
    down = run(rounds(*clean(4), (1.0, 20), (1.0, 20), end=later), answered.state, now=later)
    assert down.state.answered_since == NOW + 10 and down.reason == "down"


# --------------------------------------------------------------- latency

def test_first_measurement_publishes_latency_when_it_moves_past_the_hysteresis():
    # 1 ms -> 110 against the base 100: inside the hysteresis, nothing published.
    quiet = run(rounds(*clean(rtt=1.0)))
    assert (quiet.cost, quiet.reason, quiet.events) == (BASE, "base", ())
    assert quiet.state.latency_cost == 110
    moved = run(rounds(*clean(rtt=30.0)))
    assert (moved.cost, moved.reason) == (400, "latency")
    assert event_names(moved) == ["cost-change"]
    assert moved.events[0].fields == {"old": BASE, "new": 400, "reason": "latency", "rtt": 30.0, "loss": 0.0,
                                      "jitter": 0.0, "host_jitter": None, "link_jitter": 0.0}


def test_a_direct_link_150_ms_slower_loses_to_a_two_hop_path_of_clean_links():
    state = settle()
    slow = run(rounds(*clean(3), *clean(3, rtt=151.0)), state)
    hop = settle().cost
    assert slow.reason == "latency"
    assert slow.cost > 2 * hop
    # ... and a detour that is slower than the direct link is not taken.
    assert settle(rtt=20.0).cost < 2 * settle(rtt=12.0).cost


def test_latency_follows_in_two_rounds_both_ways():
    state = settle()
    one = run(rounds(*clean(5), (151.0, 0)), state)
    assert one.cost == state.cost  # one slow round of three is not the median
    two = run(rounds(*clean(4), (151.0, 0), (151.0, 0)), one.state)
    assert two.cost == BASE + 1510
    back_one = run(rounds(*clean(3), (151.0, 0), (151.0, 0), (1.0, 0)), two.state)
    assert back_one.cost == two.cost
    back = run(rounds(*clean(4), (151.0, 0), (1.0, 0), (1.0, 0)), back_one.state)
    assert (back.cost, back.reason) == (110, "latency")


@pytest.mark.parametrize("published, rtt, moves", [
    (110, 6.0, False),  # +50: not more than the absolute threshold
    (110, 6.1, True),  # +51 and 46 %
    (1000, 99.0, False),  # +90: more than 50 but not more than 10 %
    (1000, 100.1, True),  # +101: more than both
    (1000, 79.0, True),  # -110: either way
    (1000, 80.0, False),  # -100: not more than 10 %
])
def test_hysteresis_needs_both_the_relative_and_the_absolute_threshold(published, rtt, moves):
    state = LinkState(cost=published, reason="latency", latency_cost=published)
    decision = run(rounds(*clean(rtt=rtt)), state)
    assert (decision.cost != published) is moves
    assert bool(decision.events) is moves


def test_steady_noise_publishes_nothing():
    rng = random.Random(8)
    state = settle(rtt=1.5)
    for tick in range(360):  # an hour of rounds
        window = [Round(NOW + tick * 10 - k * 10, S.echoes,
                        tuple(1.5 + abs(rng.gauss(0, 2)) + abs(rng.gauss(0, 2)) for _ in range(S.echoes)
                              if rng.random() >= 0.02))
                  for k in reversed(range(6))]
        decision = run(window, state, now=NOW + tick * 10)
        assert decision.events == (), tick
        state = decision.state
    assert state.cost == settle(rtt=1.5).cost and state.penalties == ()


# ------------------------------------------------------------------ loss

LOSSY = 8  # of 60 recent echoes: 13.3 %, at or above the 12 % threshold
LOSSY_OK = 7  # 11.7 %


def test_loss_below_the_threshold_changes_nothing():
    state = settle()
    decision = run(rounds(*clean(3), (1.0, LOSSY_OK), (1.0, 0), (1.0, 0)), state)
    assert decision.cost == state.cost and decision.state.penalties == ()


def test_loss_at_the_threshold_adds_the_penalty_at_once_and_it_beats_a_two_hop_path():
    state = settle()
    decision = run(rounds(*clean(3), (1.0, LOSSY), (1.0, 0), (1.0, 0)), state)
    assert (decision.cost, decision.reason) == (110 + S.loss_penalty, "loss")
    assert decision.cost > 2 * state.cost
    assert decision.state.loss_until == NOW + S.hold_down
    assert event_names(decision) == ["cost-change", "link-degraded"]
    assert decision.events[1].fields["reason"] == "loss"


def test_no_loss_decision_before_the_recent_rounds_are_all_there():
    decision = run(rounds((1.0, 10)), settle())
    assert decision.state.penalties == ()


def test_loss_penalty_holds_until_the_link_was_clean_for_the_hold_down():
    state = run(rounds(*clean(3), (1.0, 20), (1.0, 20), (1.0, 10)), settle()).state
    assert state.penalties == ("loss",)
    # Loss gone but still in the recent rounds (>= 6 %): the hold-down keeps restarting.
    later = NOW + 100
    still = run(rounds(*clean(3), (1.0, 10), (1.0, 0), (1.0, 0), end=later), state, now=later)
    assert still.state.loss_until == later + S.hold_down and still.reason == "loss"
    # Clean from here on: nothing changes until the hold-down has passed ...
    clean_since = later + 10
    held = run(rounds(*clean(), end=clean_since), still.state, now=clean_since)
    assert held.cost == still.cost and held.state.loss_until == later + S.hold_down
    just_before = later + S.hold_down - 0.1
    assert run(rounds(*clean(), end=just_before), held.state, now=just_before).cost == still.cost
    # ... then it is lifted, with the reason and the event that say so.
    lifted = run(rounds(*clean(), end=later + S.hold_down), held.state, now=later + S.hold_down)
    assert (lifted.cost, lifted.reason) == (110, "recovered")
    assert event_names(lifted) == ["cost-change", "link-recovered"]
    assert lifted.state.penalties == ()


def test_a_shorter_hold_down_from_the_config_is_obeyed():
    quick = QualitySettings(hold_down=20)
    state = run(rounds(*clean(3), (1.0, 20), (1.0, 20), (1.0, 20)), settle(), settings=quick).state
    assert state.loss_until == NOW + 20
    assert run(rounds(*clean(), end=NOW + 20), state, settings=quick, now=NOW + 20).reason == "recovered"


def test_latency_moves_a_penalised_link_by_its_latency_part_alone():
    lossy = run(rounds(*clean(3, rtt=15.0), *[(15.0, 10)] * 3), settle(rtt=15.0)).state
    assert lossy.cost == 250 + S.loss_penalty
    slower = run(rounds(*clean(3, rtt=25.0), *[(25.0, 10)] * 3), lossy)
    assert slower.cost == 350 + S.loss_penalty  # +100 of a latency part of 250: past both thresholds


def test_a_clock_stepped_back_neither_blinds_the_model_nor_stretches_a_penalty():
    state = run(rounds(*clean(3), (1.0, 10), (1.0, 10), (1.0, 10)), settle()).state
    earlier = NOW - 1000
    # The window still holds rounds "from the future"; the link has died since.
    window = rounds(*clean()) + rounds((1.0, 20), (1.0, 20), end=earlier)
    decision = run(window, state, now=earlier)
    assert decision.reason == "down" and decision.cost == MAX_COST
    assert all(until <= earlier + S.hold_down for until in (decision.state.loss_until, decision.state.down_until))


# ---------------------------------------------------------------- jitter

def test_jitter_at_the_threshold_adds_its_penalty_below_it_nothing():
    state = settle()
    edge = S.jitter_threshold
    below = run(rounds(*clean(3), (1.0, 0, edge - 0.1), (1.0, 0, edge - 0.1), (1.0, 0, 30)), state)
    assert below.state.penalties == () and below.cost == state.cost
    at = run(rounds(*clean(3), (1.0, 0, edge), (1.0, 0, edge), (1.0, 0, 0)), state)
    assert at.state.penalties == ("jitter",)
    assert (at.cost, at.reason) == (110 + S.jitter_penalty, "jitter")
    assert at.cost > 2 * state.cost
    assert event_names(at) == ["cost-change", "link-degraded"]


def test_one_jittery_round_is_not_enough():
    decision = run(rounds(*clean(5), (1.0, 0, 200.0)), settle())
    assert decision.state.penalties == ()


# ------------------------------------------------- the host's own jitter

def jittery(jitter, rtt=1.0):
    """A link's window: clean, then `jitter` ms in the recent rounds."""
    return rounds(*clean(3, rtt=rtt), *[(rtt, 0, jitter)] * 3)


def peer_of(name):
    """wgm4 and wgm4v6 are the links to node 4, as linkfile names them."""
    return int(name.removeprefix("wgm").removesuffix("v6"))


def decide_node(windows, states=None):
    """One cost pass over a node's links, as the cost-writer makes it:
    every link decided against the host's jitter from all the windows."""
    host = host_jitter((peer_of(name), window) for name, window in windows.items())
    states = states or {}
    return {name: decide(window, states.get(name) or settle(), None, S, BASE, False, NOW, host)
            for name, window in windows.items()}


def test_jitter_every_link_shows_in_the_same_rounds_is_the_hosts_and_no_penalty():
    # A busy host: all three links at 18 ms, over the 15 ms threshold.
    decisions = decide_node({"wgm2": jittery(18.0), "wgm4": jittery(18.0), "wgm6": jittery(18.0)})
    for decision in decisions.values():
        assert decision.state.penalties == () and decision.events == ()
        # The figure measured is kept and shown, beside the host's.
        assert (decision.state.jitter, decision.state.host_jitter) == (18.0, 18.0)


def test_one_jittery_link_among_clean_ones_is_penalised_on_its_jitter_above_the_hosts():
    decisions = decide_node({"wgm2": jittery(40.0), "wgm4": jittery(1.0), "wgm6": jittery(1.0)})
    assert decisions["wgm2"].state.penalties == ("jitter",)
    assert (decisions["wgm2"].cost, decisions["wgm2"].reason) == (110 + S.jitter_penalty, "jitter")
    degraded = decisions["wgm2"].events[1]
    assert degraded.name == "link-degraded"
    assert (degraded.fields["jitter"], degraded.fields["host_jitter"], degraded.fields["link_jitter"]) == (40, 1, 39)
    assert decisions["wgm2"].state.link_jitter == 39.0
    assert all(decisions[name].state.penalties == () for name in ("wgm4", "wgm6"))


def test_a_jittery_link_on_a_busy_host_is_still_penalised():
    # The host adds 18 ms to every link; one link has 25 ms of its own on top.
    decisions = decide_node({"wgm2": jittery(43.0), "wgm4": jittery(18.0), "wgm6": jittery(18.0)})
    assert decisions["wgm2"].state.penalties == ("jitter",)
    assert decisions["wgm4"].state.penalties == decisions["wgm6"].state.penalties == ()
    # ... but not when what it has of its own is below the threshold.
    decisions = decide_node({"wgm2": jittery(30.0), "wgm4": jittery(18.0), "wgm6": jittery(18.0)})
    assert decisions["wgm2"].state.penalties == ()


@pytest.mark.parametrize("windows", [
    {"wgm2": jittery(40.0)},  # a single link: its only way out, nothing to compare with
    {"wgm2": jittery(40.0), "wgm4": jittery(40.0)},  # the whole uplink: every link alike
])
def test_a_node_whose_every_link_is_jittery_penalises_none(windows):
    for decision in decide_node(windows).values():
        assert decision.state.penalties == ()
        assert decision.state.jitter == 40.0


def test_without_the_hosts_jitter_a_link_is_judged_on_its_jitter_as_measured():
    # (A caller that sees one link alone: decide() without a host.)
    decision = run(jittery(40.0), settle())
    assert decision.state.penalties == ("jitter",) and decision.state.host_jitter is None


def test_the_hosts_jitter_is_its_quietest_peers_and_one_lucky_peer_does_not_set_it():
    def host(*figures, when=NOW):
        return host_jitter([(peer, [Round(when, 2, (0.0, j))]) for peer, j in enumerate(figures)]).at(NOW, S)

    assert host(1.0, 40.0) == 1.0
    assert host(18.0, 18.5, 19.0, 0.5) == 0.5  # up to 4 peers: the lowest
    # 8 peers: the second lowest, so one peer measured in a quiet moment
    # does not make the other seven look jittery ...
    assert host(3.0, 15.0, 16.0, 18.0, 19.0, 21.0, 22.0, 24.0) == 15.0
    # ... up to the lowest plus the threshold (0.5 + 15).
    assert host(0.5, 18.0, 18.5, 19.0, 20.0, 21.0, 22.0, 24.0) == 0.5 + S.jitter_threshold
    assert host(when=NOW) is None and HostJitter().at(NOW, S) is None
    # Rounds of one pass (started a little apart) are one round; the next pass is not.
    assert host_jitter([(2, [Round(NOW, 2, (0.0, 40.0))]), (4, [Round(NOW + 2, 2, (0.0, 1.0))])]).at(NOW, S) == 1.0
    assert host_jitter([(2, [Round(NOW, 2, (0.0, 40.0))]),
                        (4, [Round(NOW - S.interval, 2, (0.0, 1.0))])]).at(NOW, S) == 40.0


def test_each_peer_counts_once_with_its_quietest_link():
    def host(*links):
        return host_jitter([(peer, [Round(NOW, 2, (0.0, j))]) for peer, j in links]).at(NOW, S)

    # Five links, but two peers: peer 2's quiet IPv6 link is its figure.
    assert host((2, 40.0), (2, 1.0), (4, 18.0), (4, 18.0), (4, 19.0)) == 1.0
    # Six links at 18 of 2 peers are two votes, not six: the lowest of 2 peers.
    assert host((2, 18.0), (2, 18.0), (2, 18.0), (4, 18.0), (4, 18.0), (4, 18.0), (6, 0.5)) == 0.5


def test_a_loaded_host_with_four_dual_stack_peers_penalises_no_link():
    windows = {name: jittery(figure) for name, figure in
               (("wgm2", 18.0), ("wgm2v6", 18.5), ("wgm4", 17.5), ("wgm4v6", 18.0),
                ("wgm6", 19.0), ("wgm6v6", 18.0), ("wgm8", 18.0), ("wgm8v6", 17.0))}
    assert all(d.state.penalties == () and d.events == () for d in decide_node(windows).values())


def test_hostile_dual_stack_peers_cannot_outvote_the_reference():
    # One clean link, one honest jittery one, and four links at 45 ms of
    # two peers that make their own links jittery. Counted as links the
    # host's jitter would be 40 ms and the honest jittery link judged at 0.
    windows = {"wgm2": jittery(1.0), "wgm4": jittery(40.0),
               "wgm6": jittery(45.0), "wgm6v6": jittery(45.0), "wgm8": jittery(45.0), "wgm8v6": jittery(45.0)}
    decisions = decide_node(windows)
    assert decisions["wgm4"].state.penalties == ("jitter",)
    assert decisions["wgm4"].state.link_jitter == 39.0
    assert decisions["wgm2"].state.penalties == ()


def test_many_hostile_peers_raise_the_reference_by_one_threshold_at_most():
    # Three hostile peers of five are enough to set the quarter figure at
    # 45 ms; the cap keeps it at 1 + 15, so the 40 ms link is still 24 above.
    windows = {"wgm2": jittery(1.0), "wgm4": jittery(40.0),
               "wgm6": jittery(45.0), "wgm8": jittery(45.0), "wgm10": jittery(45.0)}
    decisions = decide_node(windows)
    assert decisions["wgm4"].state.penalties == ("jitter",)
    assert decisions["wgm4"].state.link_jitter == 40.0 - (1.0 + S.jitter_threshold)


@pytest.mark.parametrize("jitters", [(40.0, 40.0), (40.0, 38.0), (18.0, 17.0)])
def test_a_single_dual_stack_peer_is_like_a_single_link(jitters):
    # Both links to one peer: nothing else to compare with, so jitter both
    # show (the node's uplink, the peer itself) penalises neither.
    decisions = decide_node({"wgm2": jittery(jitters[0]), "wgm2v6": jittery(jitters[1])})
    assert all(d.state.penalties == () for d in decisions.values())


def test_a_single_peers_links_are_judged_against_each_other():
    # One of the two is jittery alone: a penalty moves the traffic onto the other.
    decisions = decide_node({"wgm2": jittery(40.0), "wgm2v6": jittery(1.0)})
    assert (decisions["wgm2"].state.penalties, decisions["wgm2v6"].state.penalties) == (("jitter",), ())


def test_seven_links_of_a_busy_host_with_one_measured_in_a_quiet_moment():
    windows = {f"wgm{2 * i}": jittery(figure) for i, figure in enumerate((15, 16, 18, 19, 21, 22, 24), start=1)}
    windows["wgm16"] = jittery(3.0)
    assert all(d.state.penalties == () for d in decide_node(windows).values())


def test_the_judged_figure_is_kept_beside_the_medians_it_is_not_the_difference_of():
    # Per round the link's jitter is 30, 30, 0 and the host's 30, 0, 0:
    # the medians are 30 and 0, but above the host's it is 0, 30, 0.
    decisions = decide_node({"wgm2": rounds(*clean(3), (1.0, 0, 30.0), (1.0, 0, 30.0), (1.0, 0, 0.0)),
                             "wgm4": rounds(*clean(3), (1.0, 0, 30.0), (1.0, 0, 0.0), (1.0, 0, 0.0))})
    state = decisions["wgm2"].state
    assert (state.jitter, state.host_jitter, state.link_jitter, state.penalties) == (30.0, 0.0, 0.0, ())


def test_a_jitter_penalty_is_lifted_once_the_link_is_no_worse_than_the_host():
    penalised = decide_node({"wgm2": jittery(40.0), "wgm4": jittery(1.0)})["wgm2"].state
    # The host gets busy as the link's own trouble ends: both at 18 ms.
    later = NOW + S.hold_down
    both = {"wgm2": rounds(*[(1.0, 0, 18.0)] * 6, end=later), "wgm4": rounds(*[(1.0, 0, 18.0)] * 6, end=later)}
    host = host_jitter((peer_of(name), window) for name, window in both.items())
    lifted = decide(both["wgm2"], penalised, None, S, BASE, False, later, host)
    assert (lifted.reason, lifted.state.penalties) == ("recovered", ())


def test_a_new_second_link_does_not_judge_rounds_it_was_not_in():
    # wgm4 has one round so far: the older rounds of wgm2 have only itself to compare with.
    decisions = decide_node({"wgm2": jittery(40.0), "wgm4": rounds((1.0, 0, 1.0))})
    assert decisions["wgm2"].state.penalties == ()
    decisions = decide_node({"wgm2": jittery(40.0), "wgm4": rounds(*[(1.0, 0, 1.0)] * 3)})
    assert decisions["wgm2"].state.penalties == ("jitter",)


def test_the_lab_jitter_maps_onto_the_prober_metric_across_the_threshold():
    """The lab holds each packet max(0, delay + N(0, sigma)) each way (tests/lab/delay.py).
    Its sigma per direction is what a test asks for; the prober's metric is
    the mean |difference| of successive RTTs."""
    from tests.lab.delay import Impairment

    def metric(sigma, delay=0.0, seed=1):
        rng, impairment = random.Random(seed), Impairment(delay=delay, jitter=sigma)
        rtts = tuple(1000 * (impairment.hold(rng) + impairment.hold(rng)) for _ in range(600))
        return Round(0, len(rtts), rtts).jitter

    # With a delay well above sigma: RTT sd = sigma*sqrt(2), differences sd = 2 sigma,
    # mean |N(0, (2 sigma)^2)| = 2 sigma * sqrt(2/pi) = 1.6 sigma.
    assert metric(10, delay=75) == pytest.approx(1.6 * 10, rel=0.1)
    # With no delay the lab clamps at 0 (half of each direction's draws):
    # about 0.93 sigma.
    assert metric(40) == pytest.approx(0.93 * 40, rel=0.1)
    assert metric(40) > S.jitter_threshold * 2
    assert metric(2) < S.jitter_threshold / 4 and metric(2, delay=75) < S.jitter_threshold / 4


# ------------------------------------------------------------------ down

def test_two_silent_rounds_are_down_at_once_and_come_back_through_the_hold_down():
    state = settle()
    one = run(rounds(*clean(5), (1.0, 20)), state)
    assert one.reason == "loss" and "down" not in one.state.penalties  # 20 of 60 lost is loss
    down = run(rounds(*clean(4), (1.0, 20), (1.0, 20)), one.state)
    assert (down.cost, down.reason) == (MAX_COST, "down")
    assert event_names(down)[:2] == ["cost-change", "link-degraded"]
    # Back, but held: still down until clean for the hold-down.
    back = NOW + 30
    answering = run(rounds(*clean(3), (1.0, 20), (1.0, 20), (1.0, 0), end=back), down.state, now=back)
    assert answering.cost == MAX_COST
    done = NOW + 30 + S.hold_down
    lifted = run(rounds(*clean(), end=done), answering.state, now=done)
    assert (lifted.cost, lifted.reason) == (110, "recovered")


# ----------------------------------------------------------- pins, clients

def test_a_pin_wins_over_everything_and_auto_returns_to_measurement():
    state = settle()
    pinned = run(rounds(*clean()), state, pin=5000)
    assert (pinned.cost, pinned.reason) == (5000, "manual")
    assert pinned.events[0].fields["reason"] == "manual"
    lossy = run(rounds(*clean(3), (1.0, 10), (1.0, 10), (1.0, 10)), pinned.state, pin=5000)
    assert lossy.cost == 5000 and lossy.state.penalties == ("loss",)
    assert event_names(lossy) == ["link-degraded"]  # measured, reported, not applied
    repinned = run(rounds(*clean()), pinned.state, pin=120)  # a small move still applies
    assert repinned.cost == 120
    released = run(rounds(*clean()), repinned.state, pin=None)
    assert (released.cost, released.reason) == (110, "latency")


def test_a_pin_applies_without_any_measurement():
    decision = run([], settle(), pin=700)
    assert (decision.cost, decision.reason) == (700, "manual")


def test_client_links_keep_their_extra_cost_and_costs_stay_in_range():
    fresh = initial_state(BASE, client=True)
    assert fresh.cost == BASE + CLIENT_COST_PENALTY
    slow = run(rounds(*clean(rtt=30.0)), fresh, client=True)
    assert slow.cost == BASE + 300 + CLIENT_COST_PENALTY
    lossy = run(rounds(*clean(3, rtt=30.0), *[(9000.0, 20)] * 3), slow.state, client=True)
    assert lossy.cost == MAX_COST  # clamped, never past OSPF's range
    assert run(rounds(*clean()), fresh, pin=65535, client=True).cost == MAX_COST
    assert run(rounds(*clean(rtt=0.0)), LinkState(cost=1000), settings=QualitySettings(ms_cost=0)).cost >= 1


# -------------------------------------------------------- nothing to go on

@pytest.mark.parametrize("window", [
    [],  # no probe file, or an unreadable one
    rounds(*clean(), end=NOW - 3600),  # a prober that stopped an hour ago
])
def test_without_fresh_rounds_a_link_keeps_its_cost_and_penalties_with_a_warning(window):
    penalised = run(rounds(*clean(3), (1.0, 10), (1.0, 10), (1.0, 10)), settle()).state
    decision = run(window, penalised, now=NOW + 10 * S.hold_down)
    assert decision.cost == penalised.cost and decision.reason == "loss"
    assert decision.state.penalties == ("loss",)
    assert decision.warning and "keeps its published cost" in decision.warning
    assert decision.events == ()
