"""When a new node in the routes should start a mesh pass (pure).

wgmesh-vxlan-sync wakes on every route change and so is the first to see a
node appear; a mesh pass started then links it within seconds, instead of
at the next tick of wgmesh-mesh.timer (kept as a safety net). Nodes join in
bursts (a whole mesh connecting to one node), and each appearance arrives
as several route events: the trigger waits HOLD seconds after the first
new node it sees, so one pass covers the burst. A node that leaves the
routes is forgotten, so its return starts a pass too (one with nothing to
do exits in a moment).

Side of the join split: privileged (wgmesh-vxlan-sync, which starts the
pass through its supervisor).
"""

from dataclasses import dataclass

HOLD = 1.0  # seconds from the first new node to the pass
RETRY = 2.0  # seconds before asking again while a pass is running


@dataclass(frozen=True)
class MeshTrigger:
    covered: frozenset[int] = frozenset()  # nodes a started pass has seen
    due: float | None = None  # when to start a pass for the nodes not covered

    def seen(self, routed: frozenset[int], now: float) -> "MeshTrigger":
        """The nodes in the routes now."""
        covered = self.covered & routed
        if not routed - covered:
            return MeshTrigger(covered, None)
        return MeshTrigger(covered, self.due if self.due is not None else now + HOLD)

    def is_due(self, now: float) -> bool:
        return self.due is not None and now >= self.due

    def started(self, routed: frozenset[int]) -> "MeshTrigger":
        """A pass was started while routed were the nodes in the routes."""
        return MeshTrigger(self.covered | routed, None)

    def busy(self, now: float) -> "MeshTrigger":
        """A pass was running already: it may have read the routes before
        the new nodes came, so ask again a little later."""
        return MeshTrigger(self.covered, now + RETRY)

    def wait(self, now: float, longest: float) -> float:
        """How long the event loop may sleep before the trigger is due."""
        return longest if self.due is None else max(0.0, min(longest, self.due - now))
