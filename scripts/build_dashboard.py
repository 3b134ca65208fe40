"""Build the Grafana dashboard of handwerk with grafana-foundation-sdk (Grafana 11.6 types).

    .venv/bin/python scripts/build_dashboard.py           # writes deploy/grafana/dashboards/handwerk.json
    .venv/bin/python scripts/build_dashboard.py --check   # exit 1 if the committed file is stale

The JSON is committed (Grafana provisions it from deploy/grafana/dashboards/); a test asserts
that it equals what this script generates, so edit this script, never the JSON.

Every query reads metrics that several processes may report (the lag monitor runs in `serve`,
`consume` and `relay`; the api and the relay both see the outbox), so gauges are aggregated
with `max by (...)` and counters and histograms summed over instances before any quantile.
Panels whose metric only exists after a first event (5xx) show 0 instead of "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
)

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "deploy" / "grafana" / "dashboards" / "handwerk.json"

UID = "handwerk-pipeline"
# The datasource provisioned by deploy/grafana/provisioning/datasources/prometheus.yml.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "$__rate_interval"
# API routes worth charting (the scrape endpoint and the probes would drown them).
API = 'endpoint!~"/metrics|/healthz|/readyz|unmatched"'
SEARCH = 'endpoint=~"/api/v1/similarity/(find-similar|batch-similar)"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    group = f"{by}, le" if by else "le"
    series = f"{metric}_bucket{{{selector}}}" if selector else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by ({group}) (rate({series}[{RATE}])))"


def or_zero(expr: str, base: str) -> str:
    """``expr``, or 0 for every series of ``base`` where ``expr`` has none yet."""
    return f"({expr}) or ({base} * 0)"


def panel(title: str, description: str, unit: str, queries: list[Query], *, width: int = 12,
          thresholds: list[tuple[float, str]] | None = None) -> timeseries.Panel:
    built = (timeseries.Panel().title(title).description(description).unit(unit)
             .datasource(DATASOURCE).span(width).height(8).fill_opacity(10).line_width(1)
             .legend(VizLegendOptions().display_mode(LegendDisplayMode.TABLE)
                     .placement(LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"])))
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        built = built.with_target(prometheus.Dataquery().expr(query.expr)
                                  .legend_format(query.legend).ref_id(ref).range())
    if thresholds:
        steps = [Threshold(value=None, color="green")]
        steps += [Threshold(value=value, color=color) for value, color in thresholds]
        built = built.thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
    return built


def search_panels() -> list[timeseries.Panel]:
    requests = f"sum by (endpoint) (rate(handwerk_ml_requests_total{{{API}}}[{RATE}]))"
    errors = f'sum by (endpoint) (rate(handwerk_ml_requests_total{{{API},status=~"5.."}}[{RATE}]))'
    ratio = (f'sum(rate(handwerk_ml_requests_total{{status=~"5.."}}[{RATE}])) '
             f"/ sum(rate(handwerk_ml_requests_total[{RATE}]))")
    total = f"sum(rate(handwerk_ml_requests_total[{RATE}]))"
    return [
        panel("Request rate", "Requests per second by route, all statuses "
              "(handwerk_ml_requests_total).", "reqps",
              [Query(requests, "{{endpoint}}")]),
        panel("Errors (5xx)", "5xx answers per second by route, and their share of all requests "
              "(alert HandwerkHighErrorRate at 1%). 4xx are the client's errors and not counted.",
              "reqps", [Query(or_zero(errors, requests), "{{endpoint}}"),
                        Query(or_zero(ratio, total), "5xx share")]),
        panel("Search latency p50 / p95 / p99", "find-similar and batch-similar; the p95 alert "
              "fires above 100 ms for 5 minutes (HandwerkSearchLatencyHigh).", "s",
              [Query(quantile(q, "handwerk_ml_request_duration_seconds", "endpoint", SEARCH),
                     f"{{{{endpoint}}}} p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
              thresholds=[(0.1, "red")]),
        panel("Latency p50 / p95 / p99, other routes", "Every other API route.", "s",
              [Query(quantile(q, "handwerk_ml_request_duration_seconds", "endpoint",
                              f'{API},endpoint!~"/api/v1/similarity/(find-similar|batch-similar)"'),
                     f"{{{{endpoint}}}} p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]),
    ]


def pipeline_panels() -> list[timeseries.Panel]:
    lag_by = "group, topic, partition"
    return [
        panel("Consumer lag per partition", "High watermark minus the group's committed offset, "
              "per partition (handwerk_ml_consumer_group_lag), read by the lag monitor in every "
              "role, so it stays visible while the consumers are down.", "short",
              [Query(f"max by ({lag_by}) (handwerk_ml_consumer_group_lag)",
                     "{{topic}}/{{partition}} ({{group}})")]),
        panel("Oldest unapplied event age", "Age of the oldest record past the committed offset, "
              "per partition: how stale search is at worst (alert above 60 s).", "s",
              [Query(f"max by ({lag_by}) (handwerk_ml_oldest_unapplied_event_age_seconds)",
                     "{{topic}}/{{partition}} ({{group}})")], thresholds=[(60, "red")]),
        panel("Freshness: write to searchable", "Event time to searchable "
              "(handwerk_ml_write_to_searchable_seconds).", "s",
              [Query(quantile(q, "handwerk_ml_write_to_searchable_seconds"), f"p{round(q * 100)}")
               for q in (0.5, 0.95)]),
        panel("Dead-lettered events", "Records sent to the DLQ per second, by reason "
              "(`handwerk dlq list`; alert on any).", "ops",
              [Query(f"sum by (reason) (rate(handwerk_ml_events_dead_lettered_total[{RATE}]))",
                     "{{reason}}")]),
        panel("Outbox backlog", "Outbox rows not yet acknowledged by the broker.", "short",
              [Query("max(handwerk_ml_outbox_backlog)", "rows")]),
        panel("Outbox oldest row age", "Age of the oldest unpublished outbox row "
              "(alert above 60 s).", "s",
              [Query("max(handwerk_ml_outbox_oldest_age_seconds)", "oldest row")],
              thresholds=[(60, "red")]),
    ]


def consumer_panels() -> list[timeseries.Panel]:
    return [
        panel("Embed and index-write time", "Per micro-batch: embedding "
              "(handwerk_ml_embed_seconds) and the index write (handwerk_ml_index_write_seconds).",
              "s", [Query(quantile(q, f"handwerk_ml_{name}_seconds"), f"{label} p{round(q * 100)}")
                    for name, label in (("embed", "embed"), ("index_write", "index write"))
                    for q in (0.5, 0.95)]),
        panel("Batch sizes", "Records per consumer micro-batch.", "short",
              [Query(quantile(q, "handwerk_ml_batch_size"), f"p{round(q * 100)}") for q in (0.5, 0.95)]
              + [Query(f"sum(rate(handwerk_ml_batch_size_sum[{RATE}])) "
                       f"/ sum(rate(handwerk_ml_batch_size_count[{RATE}]))", "mean")]),
        panel("Data folder free space", "Bytes still available on the filesystem of each "
              "process's data folder (handwerk_ml_data_dir_free_bytes); at 0 writes answer 507 "
              "(alert HandwerkDataDirLowOnSpace under 1 GiB or when it would be gone within "
              "4 hours).", "bytes",
              [Query("min by (job, instance) (handwerk_ml_data_dir_free_bytes)",
                     "{{job}} {{instance}}")]),
    ]


def alert_panels() -> list[timeseries.Panel]:
    return [
        panel("Alerts pending and firing", "Prometheus' own ALERTS series for the rules in "
              "deploy/prometheus/alerts.yml (1 while pending or firing).", "short",
              [Query('sum by (alertname, alertstate) (ALERTS{alertname=~"Handwerk.*"})',
                     "{{alertname}} {{alertstate}}")], width=24),
    ]


def build() -> dict[str, Any]:
    board = (dash.Dashboard("handwerk: search and indexing pipeline").uid(UID)
             .description("Search API, consumer lag and freshness, outbox, DLQ and consumer work "
                          "(issue #8). Generated by scripts/build_dashboard.py: do not edit here.")
             .tags(["handwerk"]).refresh("10s").time("now-1h", "now").timezone("browser")
             .tooltip(DashboardCursorSync.CROSSHAIR).editable())
    rows = (("Search API", search_panels()), ("Consumer lag and freshness", pipeline_panels()),
            ("Consumer work", consumer_panels()), ("Alerts", alert_panels()))
    for title, panels in rows:
        board = board.with_row(dash.Row(title))
        for item in panels:
            board = board.with_panel(item)
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, item in enumerate(encoded["panels"], start=1):   # stable ids, in layout order
        item["id"] = number
    for key in ("annotations", "templating"):   # Grafana expects the lists, even empty
        encoded.setdefault(key, {}).setdefault("list", [])
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of a built dashboard, in layout order."""
    return [(item["title"], target["expr"]) for item in board["panels"]
            for target in item.get("targets", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run scripts/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(build()['panels'])} panels and rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
