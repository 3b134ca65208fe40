"""The Grafana dashboard: the committed JSON is what scripts/build_dashboard.py generates, it has
the panels issue #8 asks for, and every query is valid PromQL over metrics handwerk exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

from handwerk.metrics import Metrics
from tests.observability.tools import ALERTS, DASHBOARD_JSON, dashboard_script, grafana_to_promql, promtool

# Panel title -> metrics its queries must read.
PANELS = {
    "Request rate": {"handwerk_ml_requests_total"},
    "Errors (5xx)": {"handwerk_ml_requests_total"},
    "Search latency p50 / p95 / p99": {"handwerk_ml_request_duration_seconds_bucket"},
    "Consumer lag per partition": {"handwerk_ml_consumer_group_lag"},
    "Oldest unapplied event age": {"handwerk_ml_oldest_unapplied_event_age_seconds"},
    "Freshness: write to searchable": {"handwerk_ml_write_to_searchable_seconds_bucket"},
    "Outbox backlog": {"handwerk_ml_outbox_backlog"},
    "Outbox oldest row age": {"handwerk_ml_outbox_oldest_age_seconds"},
    "Dead-lettered events": {"handwerk_ml_events_dead_lettered_total"},
    "Embed and index-write time": {"handwerk_ml_embed_seconds_bucket",
                                   "handwerk_ml_index_write_seconds_bucket"},
    "Batch sizes": {"handwerk_ml_batch_size_bucket"},
    "Data folder free space": {"handwerk_ml_data_dir_free_bytes"},
}
METRIC = re.compile(r"\bhandwerk_ml_[a-z0-9_]+")


def board() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text())  # type: ignore[no-any-return]


def exported() -> set[str]:
    """Every series name the process metrics can produce (labelled ones have no sample until
    first used, so names come from the metric types)."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    families: list[Metric] = list(Metrics().registry.collect())
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def test_committed_json_is_what_the_script_generates() -> None:
    script = dashboard_script()
    assert DASHBOARD_JSON.read_text() == script.render(), (
        "deploy/grafana/dashboards/handwerk.json is stale: run "
        ".venv/bin/python scripts/build_dashboard.py")
    assert script.main(["--check"]) == 0


def test_the_asked_panels_read_the_right_metrics() -> None:
    script = dashboard_script()
    queries: dict[str, list[str]] = {}
    for title, expr in script.expressions(board()):
        queries.setdefault(title, []).append(expr)
    for title, metrics in PANELS.items():
        assert title in queries, f"panel {title!r} missing"
        used = {name for expr in queries[title] for name in METRIC.findall(expr)}
        assert metrics <= used, (title, used)
    latency = " ".join(queries["Search latency p50 / p95 / p99"])
    assert all(f"histogram_quantile({q}," in latency for q in (0.5, 0.95, 0.99))
    freshness = " ".join(queries["Freshness: write to searchable"])
    assert all(f"histogram_quantile({q}," in freshness for q in (0.5, 0.95))
    ids = [p["id"] for p in board()["panels"]]
    assert len(ids) == len(set(ids))


def test_queries_and_alert_rules_use_only_exported_metrics() -> None:
    names = exported()
    script = dashboard_script()
    rules = yaml.safe_load(ALERTS.read_text())
    used = {name for _, expr in script.expressions(board()) for name in METRIC.findall(expr)}
    used |= {name for group in rules["groups"] for rule in group["rules"]
             for name in METRIC.findall(rule["expr"])}
    assert used - names == set(), f"not exported by handwerk.metrics: {sorted(used - names)}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as Grafana sends it) as a recording rule."""
    script = dashboard_script()
    rules = [{"record": f"dashboard:query:{n}", "expr": grafana_to_promql(expr, "1m")}
             for n, (_, expr) in enumerate(script.expressions(board()))]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", path, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
