"""The Grafana dashboard shipped in the package's docs: it parses, plots
every series the textfile has per link, and asks for none it does not have
(a renamed metric would leave an empty panel nobody notices)."""

import json
import re
from pathlib import Path

from wgmesh_common import metrics

DASHBOARD = Path(__file__).parents[2] / "doc/grafana-wgmesh.json"

# PromQL words that are not metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "time", "sum", "avg", "min", "max", "count",
    "topk", "bottomk", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "abs", "clamp_min", "clamp_max", "label_values", "max_over_time", "min_over_time",
    "avg_over_time", "changes", "resets", "timestamp", "vector", "scalar",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: its identifiers, once label
    matchers, strings, ranges, Grafana variables and grouping clauses are gone."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\$\w+", "", text)
    text = re.sub(r"label_values\((.*),\s*\w+\s*\)", r"label_values(\1)", text)  # (series, label name)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    unknown_words = {word for word in words - PROMQL_WORDS if not word.startswith("wgmesh_")}
    assert not unknown_words, f"{expr!r}: {sorted(unknown_words)} are neither PromQL nor wgmesh series"
    return words - PROMQL_WORDS


def expressions(dashboard: dict) -> tuple[list[str], list[str]]:
    panel_exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    variable_queries = [variable["query"]["query"] for variable in dashboard["templating"]["list"]]
    return panel_exprs, variable_queries


def test_the_dashboard_parses_and_uses_only_series_of_the_textfile():
    dashboard = json.loads(DASHBOARD.read_text())
    panel_exprs, variable_queries = expressions(dashboard)
    used = set().union(*(metric_names(expr) for expr in panel_exprs + variable_queries))
    assert used <= set(metrics.SERIES), f"series the textfile does not have: {sorted(used - set(metrics.SERIES))}"
    assert set(metrics.SERIES) <= used, f"series no panel plots: {sorted(set(metrics.SERIES) - used)}"


def test_link_series_are_plotted_per_link():
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if any(name.startswith("wgmesh_link_") for name in metric_names(target["expr"])):
                assert 'link=~"$link"' in target["expr"], target["expr"]
                assert "{{link}}" in target["legendFormat"], panel["title"]


def test_the_name_check_catches_a_series_that_does_not_exist():
    assert metric_names('rate(wgmesh_link_rx_bytes{link=~"$link"}[5m])') == {"wgmesh_link_rx_bytes"}
    assert "wgmesh_link_rx_bytes" not in metrics.SERIES
    assert metric_names('label_values(wgmesh_link_up{instance=~"$instance"}, link)') == {"wgmesh_link_up"}
