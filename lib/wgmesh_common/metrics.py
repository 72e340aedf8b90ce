"""The node_exporter textfile, wgmesh.prom: this node's links and counts in
Prometheus' text format.

This module owns that format. render() is pure: the cost-writer gathers the
inputs after each cost pass (the `wgmesh status` rows, the reachable nodes,
the counters) and writes its text atomically, so node_exporter never reads
half a file. Names follow Prometheus' conventions: base units (seconds,
bytes, ratios), `_total` for counters, `_timestamp_seconds` for a Unix
time. Per-link series carry the labels link, peer and family; a figure
that is not known (not measured yet, a device that could not be read) is
left out rather than shown as 0.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .counters import Counters
from .paths import Paths
from .status import LinkRow

TEXTFILE_DIR = "var/lib/prometheus/node-exporter"
TEXTFILE_NAME = "wgmesh.prom"
# RFC 2328's neighbour states in order, so a higher number is further along;
# 0 also stands for no neighbour at all.
OSPF_STATES = ("down", "attempt", "init", "2-way", "exstart", "exchange", "loading", "full")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # gauge or counter
    help: str


@dataclass(frozen=True)
class LinkMetric(Metric):
    value: Callable[[LinkRow], float | int | None] = lambda row: None


def _scaled(value: float | None, factor: float, digits: int) -> float | None:
    return None if value is None else round(value * factor, digits)


def ospf_state_number(text: str) -> int:
    """bird's `Full/PtP` (or `-` for none) as an OSPF_STATES index."""
    return OSPF_STATES.index(name) if (name := text.split("/")[0].strip().lower()) in OSPF_STATES else 0


LINK_METRICS = (
    LinkMetric("wgmesh_link_rtt_seconds", "gauge",
               "Round trip time over the link, the cost-writer's recent median.",
               lambda row: _scaled(row.rtt, 1e-3, 9)),
    LinkMetric("wgmesh_link_loss_ratio", "gauge", "Share of the recent echoes over the link that went unanswered (0-1).",
               lambda row: _scaled(row.loss, 1e-2, 6)),
    LinkMetric("wgmesh_link_jitter_seconds", "gauge",
               "Jitter of the link: mean difference between successive round trips.",
               lambda row: _scaled(row.jitter, 1e-3, 9)),
    LinkMetric("wgmesh_link_host_jitter_seconds", "gauge",
               "The host's own jitter in the link's rounds (its quietest peers'), the median over the recent rounds.",
               lambda row: _scaled(row.host_jitter, 1e-3, 9)),
    LinkMetric("wgmesh_link_jitter_above_host_seconds", "gauge",
               "Jitter of the link above the host's own: the median over the recent rounds of each round's "
               "difference, what the jitter penalty judges.",
               lambda row: _scaled(row.link_jitter, 1e-3, 9)),
    LinkMetric("wgmesh_link_cost", "gauge", "OSPF cost this node publishes for the link.", lambda row: row.cost),
    LinkMetric("wgmesh_link_up", "gauge",
               "1 when the link's interface is up and its last WireGuard handshake is under 180 s old.",
               lambda row: int(row.state == "up")),
    LinkMetric("wgmesh_link_ospf_neighbor_state", "gauge",
               "OSPFv2 neighbour state on the link: 0 none or down, 1 attempt, 2 init, 3 2-way, 4 exstart, "
               "5 exchange, 6 loading, 7 full.",
               lambda row: ospf_state_number(row.ospf)),
    LinkMetric("wgmesh_link_last_handshake_timestamp_seconds", "gauge",
               "Unix time of the link's last WireGuard handshake (0: never).", lambda row: row.last_handshake),
    LinkMetric("wgmesh_link_receive_bytes_total", "counter", "Bytes received from the peer by the WireGuard device.",
               lambda row: row.rx_bytes),
    LinkMetric("wgmesh_link_transmit_bytes_total", "counter", "Bytes sent to the peer by the WireGuard device.",
               lambda row: row.tx_bytes),
)

NODE_METRICS = (
    Metric("wgmesh_links", "gauge", "Links of this node (one per peer and transport family)."),
    Metric("wgmesh_reachable_nodes", "gauge", "Other nodes whose loopback this node has a route to."),
    Metric("wgmesh_bird_reconfigurations_total", "counter", "Times bird was reconfigured since the node booted."),
    Metric("wgmesh_cost_changes_total", "counter", "Published link cost changes since the node booted."),
)

SERIES = tuple(metric.name for metric in LINK_METRICS + NODE_METRICS)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def link_labels(row: LinkRow) -> str:
    family = row.transport.lower()  # "IPv4" -> "ipv4"
    return f'link="{_escape(row.name)}",peer="{row.peer}",family="{_escape(family)}"'


def _header(metric: Metric) -> list[str]:
    return [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]


def render(rows: list[LinkRow], reachable_nodes: int, counts: Counters) -> str:
    """The textfile: every link series (a link whose figure is unknown has
    no sample), then the node's."""
    lines = []
    ordered = sorted(rows, key=lambda row: row.name)
    for metric in LINK_METRICS:
        lines += _header(metric)
        for row in ordered:
            value = metric.value(row)
            if value is not None:
                lines.append(f"{metric.name}{{{link_labels(row)}}} {_number(value)}")
    node_values = {
        "wgmesh_links": len(rows),
        "wgmesh_reachable_nodes": reachable_nodes,
        "wgmesh_bird_reconfigurations_total": counts.bird_reconfigurations,
        "wgmesh_cost_changes_total": counts.cost_changes,
    }
    for metric in NODE_METRICS:
        lines += _header(metric)
        lines.append(f"{metric.name} {_number(node_values[metric.name])}")
    return "\n".join(lines) + "\n"


def textfile_path(paths: Paths, configured: str | None) -> Path | None:
    """Where the textfile goes: the configured path, none for "", and by
    default node_exporter's textfile directory when it exists (Debian's
    prometheus-node-exporter makes it)."""
    if configured == "":
        return None
    if configured:
        return Path(configured)
    directory = paths.root / TEXTFILE_DIR
    return directory / TEXTFILE_NAME if directory.is_dir() else None
