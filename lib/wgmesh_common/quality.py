"""The cost model: a link's measurements -> the OSPF cost it publishes.

decide() is a pure function of the probe window, the link's previous state,
its pin, the settings and the host's own jitter (host_jitter(): built from
every link's window and its peer); wgmesh-cost-writer only moves its inputs
and outputs between files, bird and the journal.

The rules (every number is a setting in [quality], defaults in QualitySettings):
- latency: cost = ospf.base_cost + ms_cost x the median RTT of the newest
  `recent_rounds` rounds. The base cost is a per-hop charge, so OSPF's sum
  over a path orders paths by their latency, a hop costing base/ms_cost ms.
- loss and jitter: a penalty switches on as soon as the recent loss (pooled
  over the recent rounds) or the recent jitter (the median of the rounds'
  jitter) reaches its threshold, once all `recent_rounds` rounds are there
  (one round is too few echoes to tell 1 % loss from 20 %). It switches off
  only after the link has been clean (below half that threshold) for
  `hold_down` seconds: each estimate that is not clean restarts the clock,
  and an estimate still holds the bad rounds for up to recent_rounds - 1
  rounds after the trouble ends.
- the host's own jitter: the jitter verdicts (on and clean) judge a link's
  jitter above the host's, not its jitter as measured. A busy host (its CPU
  taken by other work) delays the prober, its own WireGuard and its answers
  on every link at once, so in one probe round all its links show the same
  extra jitter; a bad link shows it alone. The host's jitter in a round
  (rounds less than interval/2 apart are one round; the prober sends every
  link's echoes in one pass) is that of its quietest peers, counted as
  peers, not links: each peer gives one figure, its quietest link's (a
  dual-stack peer has an IPv4 and an IPv6 link, and two hostile peers must
  not outvote the rest with four links), and of those the one a quarter of
  the way up from the lowest (the lowest for up to 4 peers), so one peer
  measured in a lucky moment does not set it. It is never more than the
  lowest plus jitter_threshold: peers that make their own links jittery (or
  are jittery) can raise it that far and no further, so a link
  2 x jitter_threshold above the quietest peer is penalised whatever the
  others show; the price is that a host so busy that its links show more
  than that while one peer reads clean penalises them. A link's jitter
  above the host's is, per round, its jitter minus the host's (never below
  0), and its median over the recent rounds (link_jitter) is what meets
  the threshold, and what status, metrics and events show beside the
  jitter as measured. So 18 ms on every link is no penalty, and 40 ms on
  one link among links at 1 ms is 39 ms. Consequences: a node with a single
  link never has a jitter penalty (its one link is its only way out, so a
  penalty would move none of its routes; the peer still judges the link
  against its own other links); a node with a single peer judges its two
  links against each other only (the quieter one sets the host's figure,
  and a penalty on the other moves traffic onto it); and a node whose
  every link is jittery (its whole uplink, say) has none either:
  penalising all its links alike would move none of its routes, while each
  of its peers sees one jittery peer among clean ones and routes around
  it. Loss and latency are judged as measured: a busy host delays answers
  by milliseconds, which the median RTT of 60 echoes hardly sees, and it
  does not lose them.
- down: every echo of the last `down_rounds` rounds unanswered -> MAX_COST
  at once; it comes back through the same hold-down.
- hysteresis: a cost that moved only by latency is published when its
  latency part moved by more than `hysteresis_relative` percent AND
  `hysteresis_absolute`. Penalties and pins change the cost whatever the
  hysteresis says.
- a pin (`wgmesh cost LINK N`) replaces the published cost; the link is
  still measured and its penalties still raise link-degraded and
  link-recovered, so operators hear of a pinned link that hurts. Client
  links always carry CLIENT_COST_PENALTY more (pins included); every cost
  stays within 1..MAX_COST.
- rounds dated in the future (a clock stepped back) are ignored, and no
  deadline lies further ahead than one hold-down.
- a new link is judged from its first answer on: the echoes sent while its
  peer's half did not exist yet, or while the first handshake was under way,
  are not loss of a working link. Its rounds up to and including the first
  answered one count for nothing but the latency, and a link that has never
  answered is not "down" (it carries no OSPF adjacency to move traffic off).
"""

import bisect
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .bird import CLIENT_COST_PENALTY, MAX_COST, clamp, link_cost

REASONS = ("base", "latency", "loss", "jitter", "down", "recovered", "manual")


@dataclass(frozen=True)
class QualitySettings:
    interval: int = 10  # seconds between probe rounds (the prober timer)
    echoes: int = 20  # echo requests per link and round
    echo_spacing_ms: int = 50
    echo_timeout_ms: int = 1000
    window_rounds: int = 6  # rounds the prober keeps per link
    recent_rounds: int = 3  # rounds a decision looks at
    ms_cost: int = 10  # cost per millisecond of round trip
    loss_threshold: int = 12  # percent
    loss_penalty: int = 2000
    jitter_threshold: int = 15  # ms, the prober's metric (mean |successive RTT difference|)
    jitter_penalty: int = 1000
    down_rounds: int = 2
    hold_down: int = 120  # seconds a penalised link must stay clean
    hysteresis_relative: int = 10  # percent
    hysteresis_absolute: int = 50

    @property
    def stale_after(self) -> float:
        """A round older than this says nothing about the link any more."""
        return self.window_rounds * self.interval + self.interval


@dataclass(frozen=True)
class Round:
    """One probe round of one link: the RTTs (ms) of the echoes answered."""
    time: float
    sent: int
    rtts: tuple[float, ...]

    @property
    def received(self) -> int:
        return len(self.rtts)

    @property
    def jitter(self) -> float | None:
        """The prober's jitter: the mean difference of successive RTTs."""
        if len(self.rtts) < 2:
            return None
        return statistics.fmean(abs(b - a) for a, b in zip(self.rtts, self.rtts[1:]))


@dataclass(frozen=True)
class HostJitter:
    """The jitter of every round of this node's links: (round time, peer,
    jitter ms), sorted. Pure data, so decide() stays pure."""
    rounds: tuple[tuple[float, int, float], ...] = ()

    def at(self, when: float, settings: QualitySettings) -> float | None:
        """The host's jitter in the round sent at `when`; None when no link
        has a jitter figure in that round. Each peer counts once, with its
        quietest link's figure (a peer's IPv4 and IPv6 links are one vote);
        of those, the figure a quarter of the way up from the lowest, but
        never more than the lowest plus the jitter threshold (the module
        docstring says why)."""
        tolerance = settings.interval / 2
        start = bisect.bisect_left(self.rounds, (when - tolerance,))
        end = bisect.bisect_right(self.rounds, (when + tolerance, math.inf))
        quietest: dict[int, float] = {}
        for _, peer, jitter in self.rounds[start:end]:
            quietest[peer] = min(jitter, quietest.get(peer, jitter))
        figures = sorted(quietest.values())
        if not figures:
            return None
        return min(figures[(len(figures) - 1) // 4], figures[0] + settings.jitter_threshold)


def host_jitter(windows: Iterable[tuple[int, list[Round]]]) -> HostJitter:
    """The host's jitter, from the windows of all of this node's links,
    each with its peer: (peer id, window)."""
    return HostJitter(tuple(sorted((r.time, peer, j) for peer, window in windows for r in window
                                   if (j := r.jitter) is not None)))


@dataclass(frozen=True)
class Estimate:
    rtt: float | None  # ms, median
    loss: float | None  # percent
    jitter: float | None  # ms, as measured
    down: bool
    rounds: int  # how many recent rounds it rests on
    settled: int = 0  # of those, how many were sent after the link's first answer
    host_jitter: float | None = None  # ms, the host's in the same rounds (median); None: not known
    link_jitter: float | None = None  # ms, the link's above the host's: what the verdicts judge


def fresh_rounds(window: list[Round], settings: QualitySettings, now: float) -> list[Round]:
    """The rounds that still say something about the link, oldest first."""
    return sorted((r for r in window
                   if -settings.interval <= now - r.time <= settings.stale_after and r.sent > 0),
                  key=lambda r: r.time)


def first_answer(window: list[Round], settings: QualitySettings, now: float) -> float:
    """When the oldest fresh round that got an answer was sent; 0 if none did."""
    return next((r.time for r in fresh_rounds(window, settings, now) if r.received), 0.0)


def estimate(window: list[Round], settings: QualitySettings, now: float, answered_since: float = 0.0,
             host: HostJitter | None = None) -> Estimate:
    """The link's figures from its recent rounds. Loss, jitter and down
    count only rounds sent after `answered_since` (the round of the link's
    first answer), and nothing before the link ever answered. Without
    `host` (the host's jitter is not known), the link's jitter is judged
    as measured."""
    fresh = fresh_rounds(window, settings, now)
    recent = fresh[-settings.recent_rounds:]
    settled = [r for r in recent if answered_since and r.time > answered_since]
    last_down = fresh[-settings.down_rounds:]
    down = bool(answered_since) and len(last_down) == settings.down_rounds \
        and all(r.received == 0 for r in last_down)
    rtts = [rtt for r in recent for rtt in r.rtts]
    settled_rtts = sum(r.received for r in settled)
    sent = sum(r.sent for r in settled)
    jittery = [(r, j) for r in settled if (j := r.jitter) is not None]
    jitters = [j for _, j in jittery]
    # A link's own round is always among the host's, so the host's figure is
    # never missing there; `or 0.0` only guards a caller that left it out.
    hosts = [host.at(r.time, settings) or 0.0 for r, _ in jittery] if host is not None else [0.0] * len(jittery)
    return Estimate(
        rtt=statistics.median(rtts) if rtts else None,
        loss=100.0 * (sent - settled_rtts) / sent if sent else None,
        jitter=statistics.median(jitters) if jitters else None,
        down=down,
        rounds=len(recent),
        settled=len(settled),
        host_jitter=statistics.median(hosts) if host is not None and hosts else None,
        link_jitter=statistics.median(max(0.0, j - h) for j, h in zip(jitters, hosts)) if jitters else None,
    )


@dataclass(frozen=True)
class LinkState:
    """What the cost-writer remembers of a link between runs."""
    cost: int  # the published cost
    reason: str = "base"
    latency_cost: int | None = None  # the latency part, once measured
    loss_until: float = 0.0  # a penalty is active while its until is set
    jitter_until: float = 0.0
    down_until: float = 0.0
    answered_since: float = 0.0  # when the round of the link's first answer was sent
    rtt: float | None = None  # the figures of the last decision
    loss: float | None = None
    jitter: float | None = None  # as measured (the median of the rounds')
    host_jitter: float | None = None  # the host's own in the same rounds (see host_jitter()), median
    # What the jitter verdicts judge: the median of the rounds' jitter above
    # the host's (not jitter - host_jitter: each is a median of its own).
    link_jitter: float | None = None

    @property
    def penalties(self) -> tuple[str, ...]:
        return tuple(name for name, until in (("down", self.down_until), ("loss", self.loss_until),
                                              ("jitter", self.jitter_until)) if until)


@dataclass(frozen=True)
class Event:
    name: str  # cost-change, link-degraded, link-recovered
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    state: LinkState
    events: tuple[Event, ...] = ()
    warning: str | None = None

    @property
    def cost(self) -> int:
        """The published cost."""
        return self.state.cost

    @property
    def reason(self) -> str:
        return self.state.reason


def initial_state(base_cost: int, client: bool) -> LinkState:
    """A link not decided on yet: bird has its base cost."""
    return LinkState(cost=link_cost(base_cost, client, False))


def _hold(until: float, bad: bool, clean: bool, now: float, hold_down: int) -> float:
    """A penalty's new until: set or pushed on while the link is not clean,
    lifted once it has been clean for the hold-down."""
    if bad or (until and not clean):
        return now + hold_down
    if until and now >= until:
        return 0.0
    return min(until, now + hold_down)  # a clock stepped back cannot stretch it


def decide(window: list[Round], previous: LinkState, pin: int | None, settings: QualitySettings,
           base_cost: int, client: bool, now: float, host: HostJitter | None = None) -> Decision:
    """The link's new state and published cost. host: the host's jitter,
    from every link's window (this one's included); None judges the link's
    jitter as measured."""
    answered_since = previous.answered_since
    if answered_since > now + settings.interval:
        # A clock stepped back: the link answered before any round there is now.
        answered_since = now - settings.stale_after - settings.interval
    elif not answered_since:
        answered_since = first_answer(window, settings, now)
    est = estimate(window, settings, now, answered_since, host)
    figures = {"rtt": round_figure(est.rtt), "loss": round_figure(est.loss), "jitter": round_figure(est.jitter),
               "host_jitter": round_figure(est.host_jitter), "link_jitter": round_figure(est.link_jitter)}
    warning = None
    if est.rounds == 0:
        # Nothing fresh to go on (no probe file, a bad one, or a stopped
        # prober): the link keeps its published cost and its penalties.
        warning = "no recent probe rounds: it keeps its published cost"
        state = previous
    else:
        full = est.settled >= settings.recent_rounds
        loss_bad = full and est.loss is not None and est.loss >= settings.loss_threshold
        loss_clean = est.loss is not None and est.loss < settings.loss_threshold / 2
        jitter_bad = full and est.link_jitter is not None and est.link_jitter >= settings.jitter_threshold
        jitter_clean = est.link_jitter is None or est.link_jitter < settings.jitter_threshold / 2
        answered = not est.down and est.rtt is not None
        state = replace(
            previous,
            down_until=_hold(previous.down_until, est.down, answered, now, settings.hold_down),
            loss_until=_hold(previous.loss_until, loss_bad, loss_clean, now, settings.hold_down),
            jitter_until=_hold(previous.jitter_until, jitter_bad, jitter_clean, now, settings.hold_down),
            answered_since=answered_since, rtt=est.rtt, loss=est.loss, jitter=est.jitter,
            host_jitter=est.host_jitter, link_jitter=est.link_jitter,
        )
        if est.rtt is not None:
            state = replace(state, latency_cost=clamp(base_cost + round(est.rtt * settings.ms_cost)))

    events: list[Event] = []
    switched_on = [p for p in state.penalties if p not in previous.penalties]
    switched_off = [p for p in previous.penalties if p not in state.penalties]
    if switched_on:
        events.append(Event("link-degraded", {"reason": switched_on[0], **figures}))
    if switched_off and not state.penalties:
        events.append(Event("link-recovered", {"reason": "recovered", **figures}))

    target, reason = _target(state, pin, settings, base_cost, client, bool(switched_off))
    was_pinned = previous.reason == "manual"
    forced = (pin is not None) != was_pinned or bool(switched_on or switched_off) \
        or (pin is not None and target != previous.cost)
    # On the latency part alone: a client link's +10000 or a penalty's
    # +2000 is no reason to ignore how its latency moved. (Without a change
    # of penalties, both costs carry the same ones.)
    fixed = (CLIENT_COST_PENALTY if client else 0) + _penalty(state, settings)
    if not forced and not _moved(target - fixed, previous.cost - fixed, settings):
        # Noise: nothing is published; the reason stays the one the
        # published cost was set for.
        kept = replace(state, cost=previous.cost, reason=previous.reason)
        return Decision(kept, tuple(events), warning)
    if target != previous.cost:
        events.insert(0, Event("cost-change", {"old": previous.cost, "new": target, "reason": reason,
                                               **figures}))
    return Decision(replace(state, cost=target, reason=reason), tuple(events), warning)


def _target(state: LinkState, pin: int | None, settings: QualitySettings, base_cost: int, client: bool,
            lifted: bool) -> tuple[int, str]:
    """The cost the state asks for, and why."""
    extra = CLIENT_COST_PENALTY if client else 0
    if pin is not None:
        return pinned_cost(pin, client), "manual"
    if state.down_until:
        return MAX_COST, "down"
    latency = state.latency_cost if state.latency_cost is not None else clamp(base_cost)
    target = clamp(latency + _penalty(state, settings) + extra)
    if state.loss_until:
        return target, "loss"
    if state.jitter_until:
        return target, "jitter"
    if lifted:
        return target, "recovered"
    return target, "latency" if state.latency_cost is not None else "base"


def pinned_cost(pin: int, client: bool) -> int:
    return clamp(pin + (CLIENT_COST_PENALTY if client else 0))


def _penalty(state: LinkState, settings: QualitySettings) -> int:
    return (settings.loss_penalty if state.loss_until else 0) + (settings.jitter_penalty if state.jitter_until else 0)


def _moved(target: int, published: int, settings: QualitySettings) -> bool:
    delta = abs(target - published)
    return delta > settings.hysteresis_absolute and delta > published * settings.hysteresis_relative / 100.0


def round_figure(value: float | None) -> float | None:
    """A measured figure as reported: to a hundredth."""
    return None if value is None else round(value, 2)
