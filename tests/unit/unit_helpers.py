"""Builders shared by the unit tests (imported by name: a conftest module
name is shared with other test directories, this one is not)."""

import base64
import os
import secrets
import subprocess
from pathlib import Path

from wgmesh_common import linkfile
from wgmesh_common.node import Node
from wgmesh_common.paths import Paths

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def wg(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def random_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def link_data(**overrides) -> dict:
    """A valid link file document (the listener of node 0's link to node 2)."""
    data = {
        "name": "wgm2",
        "peer_id": 2,
        "role": "listener",
        "family": 4,
        "listen_port": 51820,
        "public_key": "g6hk3EOx4cQY2ikDCY55Mp4gakfcnHLIphS8nsFBoAc=",
        "peer_public_key": "0gP1XlPVWDnfHR4vco4YrSPJuYMPzdTXcxl8OSnhFR8=",
        "offset": 4,
        "local4": "10.0.0.4",
        "peer4": "10.0.0.5",
        "local6": "fd10::4",
        "peer6": "fd10::5",
    }
    data.update(overrides)
    return data


def make_link(**overrides) -> linkfile.Link:
    return linkfile.parse(link_data(**overrides), "test")


def init_node(paths: Paths, node_id: int = 0, extra: str = "") -> Node:
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(f"[node]\nid = {node_id}\n{extra}")
    return Node.load(paths)


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def save_link_to_node_2(paths: Paths) -> bytes:
    """Link wgm2 (to node 2) with real keys; the key node 2 signs its
    requests about it with (derived from node 2's private key)."""
    from wgmesh_common import keys, linkkeys

    own_private, peer_private = random_key(), random_key()
    peer_public = keys.public_key(peer_private)
    linkfile.save(paths, make_link(peer_public_key=peer_public), own_private,
                  linkkeys.preshared_key(own_private, peer_public))
    return linkkeys.signing_key(peer_private, keys.public_key(own_private))
