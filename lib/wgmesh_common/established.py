"""Which links have carried traffic: /var/lib/wgmesh/established/NAME.

A link's half that never completed a handshake may be replaced by a new
/connect without proof (that is how an interrupted join recovers); one that
has carried traffic is replaced only by a request signed with the link's
own key. WireGuard forgets its handshakes when the interface restarts, so
the fact is kept on disk: the prober marks a link the first time an echo
over it is answered, and removing the link forgets it.
"""

from .paths import Paths


def _marker(paths: Paths, name: str):
    return paths.established_dir / name


def mark(paths: Paths, name: str) -> None:
    marker = _marker(paths, name)
    if not marker.exists():
        paths.established_dir.mkdir(parents=True, exist_ok=True)
        marker.touch(mode=0o644)


def is_established(paths: Paths, name: str) -> bool:
    return _marker(paths, name).exists()


def forget(paths: Paths, name: str) -> None:
    _marker(paths, name).unlink(missing_ok=True)
