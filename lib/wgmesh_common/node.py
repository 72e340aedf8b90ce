"""Everything a command needs to act on this node, loaded once."""

from dataclasses import dataclass

from . import config as node_config
from . import supervisor
from .addressing import MeshPlan
from .allocation import Allocator
from .config import NodeConfig
from .paths import Paths, default_paths


@dataclass
class Node:
    paths: Paths
    config: NodeConfig

    @classmethod
    def load(cls, paths: Paths | None = None) -> "Node":
        paths = paths or default_paths()
        return cls(paths, node_config.load(paths.config_file))

    @property
    def plan(self) -> MeshPlan:
        return MeshPlan.from_config(self.config)

    @property
    def node_id(self) -> int:
        return self.config.require_id()

    @property
    def allocator(self) -> Allocator:
        return Allocator(self.paths, self.plan, self.config.port_base)

    @property
    def supervisor(self):
        return supervisor.choose(self.paths, self.config)

    def api_url_of(self, node_id: int) -> str:
        """A peer's join API inside the mesh (every node listens on its loopback)."""
        return f"http://{self.plan.loopback4(node_id)}:{self.config.api_port}"
