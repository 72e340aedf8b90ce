"""Which links have carried traffic: /var/lib/wgmesh/established/NAME.

A link's half that never completed a handshake may be replaced by a new
/connect without proof (that is how an interrupted join recovers); one that
has carried traffic is replaced only by a request signed with the link's
own key. WireGuard forgets its handshakes when the interface restarts, so
the fact is kept on disk: the prober marks a link the first time an echo
over it is answered, and removing the link forgets it.

The marker holds the public key of the link's half it was written for. A
probe round that was under way while its link was removed writes its
marker after the removal; a new link of the same name (a new key) must
not inherit it, or a peer rejoining without the old key would be refused
for traffic the new link never carried. An empty marker (written before
markers held keys) counts for any link of its name.
"""

from .paths import Paths
from .tomlio import write_atomic


def _marker(paths: Paths, name: str):
    return paths.established_dir / name


def mark(paths: Paths, name: str, public_key: str) -> None:
    marker = _marker(paths, name)
    if _holds(marker) != public_key:
        paths.established_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, public_key.encode(), 0o644)


def _holds(marker) -> str | None:
    try:
        return marker.read_text().strip()
    except OSError:
        return None


def is_established(paths: Paths, name: str, public_key: str | None) -> bool:
    """Whether the half of link NAME with this public key has carried
    traffic; public_key None: any half of that name (its file unreadable)."""
    held = _holds(_marker(paths, name))
    return held is not None and (held == "" or public_key is None or held == public_key)


def forget(paths: Paths, name: str) -> None:
    _marker(paths, name).unlink(missing_ok=True)
