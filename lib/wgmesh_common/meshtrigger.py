"""When a new node in the routes should start a mesh pass (pure).

wgmesh-vxlan-sync wakes on every route change and so is the first to see a
node appear; a mesh pass started then links it within seconds, instead of
at the next tick of wgmesh-mesh.timer (kept as a safety net). Nodes join in
bursts (a whole mesh connecting to one node), and each appearance arrives
as several route events: the trigger waits HOLD seconds after the first
new node it sees, so one pass covers the burst. A pass that fails (most
often: this node has the new node's route a moment before the new node has
this one's, or a join under load ran out of time) is tried again after a
backoff that grows by RETRY per failure up to MAX_BACKOFF, so a failure
costs seconds, not the timer's interval, and a peer that stays down costs
a pass every MAX_BACKOFF seconds (the mesh timer used to run one every 5 s). A node that
leaves the routes is forgotten, so its return starts a pass too (one with
nothing to do exits in a moment).

Side of the join split: privileged (wgmesh-vxlan-sync, which starts the
pass through its supervisor).
"""

from dataclasses import dataclass, replace

HOLD = 1.0  # seconds from the first new node to the pass
RETRY = 2.0  # seconds before asking again while a pass is running
CHECK = 1.0  # seconds between looks at whether a started pass has finished
MAX_BACKOFF = 10.0  # the longest wait before trying a failed pass again


@dataclass(frozen=True)
class MeshTrigger:
    covered: frozenset[int] = frozenset()  # nodes a started pass has seen
    due: float | None = None  # when to start a pass for the nodes not covered
    handed: frozenset[int] | None = None  # the nodes of the pass started and not yet finished
    check: float | None = None  # when to look whether that pass has finished
    failures: int = 0  # passes failed in a row
    retrying: frozenset[int] = frozenset()  # the nodes of a failed pass, waiting out its backoff

    def seen(self, routed: frozenset[int], now: float) -> "MeshTrigger":
        """The nodes in the routes now. A node never handed to a pass is
        due HOLD seconds after it appears, even during a failed pass's
        backoff (the backoff is for the nodes that failed)."""
        covered = self.covered & routed
        retrying = self.retrying & routed
        pending = routed - covered
        if not pending:
            return replace(self, covered=covered, retrying=retrying, due=None)
        due = self.due if self.due is not None else now + HOLD
        if pending - retrying:
            due = min(due, now + HOLD)
        return replace(self, covered=covered, retrying=retrying, due=due)

    def is_due(self, now: float) -> bool:
        return self.due is not None and now >= self.due

    def started(self, routed: frozenset[int], now: float) -> "MeshTrigger":
        """A pass was started while routed were the nodes in the routes."""
        return replace(self, covered=self.covered | routed, due=None, handed=routed, check=now + CHECK,
                       retrying=frozenset())

    def busy(self, now: float) -> "MeshTrigger":
        """A pass was running already: it may have read the routes before
        the new nodes came, so ask again a little later."""
        return replace(self, due=now + RETRY)

    def check_due(self, now: float) -> bool:
        return self.handed is not None and self.check is not None and now >= self.check

    def finished(self, succeeded: bool | None, now: float) -> "MeshTrigger":
        """What became of the pass started: None (still queued or running),
        True, or False (its nodes are not covered after all: tried again
        after a backoff that grows by RETRY per failure up to MAX_BACKOFF)."""
        if succeeded is None:
            return replace(self, check=now + CHECK)
        if succeeded:
            return replace(self, handed=None, check=None, failures=0)
        failures = self.failures + 1
        backoff = min(RETRY * failures, MAX_BACKOFF)
        failed = self.handed or frozenset()
        return replace(self, covered=self.covered - failed, retrying=failed, handed=None, check=None,
                       failures=failures, due=now + backoff)

    def wait(self, now: float, longest: float) -> float:
        """How long the event loop may sleep before the trigger needs it."""
        moments = [moment for moment in (self.due, self.check if self.handed is not None else None)
                   if moment is not None]
        return max(0.0, min([longest] + [moment - now for moment in moments]))
