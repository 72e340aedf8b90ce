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
    def probe_round_file(self) -> Path:
        return self.run_dir / "probe.round"

    @property
    def counters_file(self) -> Path:
        return self.run_dir / "counters.toml"

    @property
    def forwarding_file(self) -> Path:
        return self.run_dir / "forwarding.toml"

    @property
    def link_up_dir(self) -> Path:
        """One file per link whose device came up this boot (see linkops)."""
        return self.run_dir / "up"

    @property
    def routing_lock(self) -> Path:
        return self.run_dir / "routing.lock"

    @property
    def bird_pending(self) -> Path:
        return self.run_dir / "bird.pending"

    @property
    def notify_urls_file(self) -> Path:
        return self.config_dir / "notify.toml"

    @property
    def notify_urls_lock(self) -> Path:
        return self.config_dir / ".notify.lock"

    @property
    def notifier_state_file(self) -> Path:
        return self.state_dir / "notifier.json"

    @property
    def pins_lock(self) -> Path:
        return self.state_dir / "pins.lock"

    @property
    def proximity_file(self) -> Path:
        return self.state_dir / "proximity.toml"

    @property
    def rekey_dir(self) -> Path:
        return self.state_dir / "rekey"

    @property
    def schema_file(self) -> Path:
        return self.state_dir / "schema"

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

    def daemon_log(self, what: str) -> Path:
        """Where a daemon run without systemd writes its output."""
        return self.run_dir / f"{what}.log"


def default_paths() -> Paths:
    return Paths(Path(os.environ.get("WGMESH_ROOT", "/")))
