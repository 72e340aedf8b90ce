"""Every file location wgmesh uses, derived from a few base directories.

WGMESH_ROOT prefixes them all (as zram-generator's ZRAM_GENERATOR_ROOT does)
so tests and the generator's golden tests can point the whole tree elsewhere.
"""

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "etc/wgmesh"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "wgmesh.toml"

    @property
    def links_dir(self) -> Path:
        return self.config_dir / "links"

    @property
    def tokens_file(self) -> Path:
        return self.config_dir / "tokens.toml"

    @property
    def run_dir(self) -> Path:
        return self.root / "run/wgmesh"

    @property
    def probe_dir(self) -> Path:
        return self.run_dir / "probe"

    @property
    def costs_file(self) -> Path:
        return self.run_dir / "costs.toml"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pid"

    @property
    def bird_config(self) -> Path:
        return self.run_dir / "bird.conf"

    @property
    def bird_socket(self) -> Path:
        return self.run_dir / "bird.ctl"

    @property
    def state_dir(self) -> Path:
        return self.root / "var/lib/wgmesh"

    @property
    def reservations_dir(self) -> Path:
        return self.state_dir / "reservations"

    @property
    def replay_dir(self) -> Path:
        return self.state_dir / "replay"

    @property
    def established_dir(self) -> Path:
        return self.state_dir / "established"

    @property
    def pins_file(self) -> Path:
        return self.state_dir / "pins.toml"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "allocation.lock"

    @property
    def wireguard_socket_dir(self) -> Path:
        """wireguard-go's control sockets (IFNAME.sock). wireguard-go itself
        always uses /var/run/wireguard, which is this directory under the
        root /; another WGMESH_ROOT only serves tests with a fake daemon."""
        return self.root / "run/wireguard"

    def link_file(self, name: str) -> Path:
        return self.links_dir / f"{name}.toml"

    def link_key(self, name: str) -> Path:
        return self.links_dir / f"{name}.key"

    def link_psk(self, name: str) -> Path:
        return self.links_dir / f"{name}.psk"

    def pid_file(self, what: str) -> Path:
        return self.pid_dir / f"{what}.pid"


def default_paths() -> Paths:
    return Paths(Path(os.environ.get("WGMESH_ROOT", "/")))
