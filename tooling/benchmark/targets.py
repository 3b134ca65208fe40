"""The targets of the bench and their verdicts: one row per measure of the results document."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    key: str
    """Dotted path into the results document, e.g. ``single.p50_ms``."""
    label: str
    op: Literal["<=", ">="]
    threshold: float
    unit: str = "ms"

    def describe(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {_number(self.threshold)}{_unit(self.unit)}"


@dataclass(frozen=True)
class Info:
    """A row without a target: context for the rows that have one."""

    key: str
    label: str
    unit: str = "ms"


TARGETS: tuple[Target | Info, ...] = (
    Info("ingest.raw_embed_rate_per_s", "raw embedder rate (in-process, every core)", "/s"),
    Info("ingest_quiet.pipeline_rate_per_s", "pipeline ingest, no searches (REST -> searchable)",
         "/s"),
    Target("ingest_quiet.pipeline_vs_raw", "pipeline / raw embedder rate, no searches", ">=",
           0.85, "x"),
    Info("ingest.pipeline_rate_per_s", "pipeline ingest, light search load", "/s"),
    Target("ingest.pipeline_vs_raw", "pipeline / raw embedder rate, light search load", ">=",
           0.85, "x"),
    Info("bulk_load.rate_per_s", "bulk load, vectors reused (REST -> searchable)", "/s"),
    Info("hnsw_wait.seconds", "then until compaction had the points in the graph", "s"),
    Info("during_ingest.p50_ms", "find-similar during ingest (light load) p50"),
    Target("during_ingest.p99_ms", "find-similar during ingest (light load) p99", "<=", 50),
    Target("during_ingest.max_ms", "find-similar during ingest (light load) max", "<=", 200),
    Target("single.p50_ms", "find-similar, 1 client, p50", "<=", 5),
    Target("single.p99_ms", "find-similar, 1 client, p99", "<=", 15),
    Target("throughput.requests_per_s", "find-similar, N clients, throughput", ">=", 1000, "/s"),
    Target("throughput.p99_ms", "find-similar, N clients, p99", "<=", 50),
    Target("batch5.p50_ms", "batch-similar of 5, p50", "<=", 15),
    Target("estimate.p50_ms", "estimate, 1 client, p50", "<=", 50),
    Info("estimate.p99_ms", "estimate, 1 client, p99"),
    Target("list_first.p50_ms", "list projects (50), first page, p50", "<=", 5),
    Target("list_deep.p50_ms", "list projects (50), deep offset, p50", "<=", 5),
    Target("list_cursor.p50_ms", "list projects (50), deep keyset cursor, p50", "<=", 5),
    Target("freshness.p50_ms", "write -> searchable p50", "<=", 50),
    Target("freshness.p99_ms", "write -> searchable p99", "<=", 150),
    *(Info(f"freshness.stages.{label}.p50_ms", f"write -> searchable stage: {label} p50")
      for label in ("event -> broker", "broker -> fetched", "batch apply", "embed (in apply)",
                    "index write (in apply, with flush)")),
    Target("memory.serve_rss_mib", "serve process RSS", "<=", 1024, "MiB"),
    Info("memory.serve_peak_rss_mib", "serve process peak RSS (VmHWM)", "MiB"),
    Info("quality.hnsw_share", "share of points in the HNSW graph then", ""),
    Target("quality.recall_at_10", "recall@10 vs exact search", ">=", 0.95, ""),
    Info("quality.baseline_p50_ms", "old design: embed + brute force, p50"),
    Info("quality.baseline_search_p50_ms", "old design: brute force only, p50"),
    Info("quality.service_p50_ms", "service find-similar (same queries), p50"),
    Info("quality.speedup", "speedup of the service vs old design", "x"),
    Info("stages.queue", "find-similar stage: queue (median)"),
    Info("stages.embed", "find-similar stage: embed (median)"),
    Info("stages.search", "find-similar stage: search (median)"),
    Info("stages.serialize", "find-similar stage: serialize (median)"),
    Info("compaction.quiet.p50_ms", "find-similar, 1 client, quiet (before compaction) p50"),
    Info("compaction.during.p50_ms", "find-similar, 1 client, during compaction p50"),
    Info("compaction.during.p99_ms", "find-similar, 1 client, during compaction p99"),
    Target("compaction.p50_vs_quiet", "find-similar p50 during compaction / quiet", "<=", 1.2,
           "x"),
    Info("compaction.seconds", "compaction, request -> handover", "s"),
    Info("compaction.serve_rss_after_mib", "serve RSS after the compaction's handover", "MiB"),
    Info("reindex.texts_per_s", "reindex without vector reuse (request -> handover)", "/s"),
    Target("reindex.vs_raw", "reindex without reuse / raw embedder rate", ">=", 0.85, "x"),
    Info("reindex.during.p99_ms", "find-similar during that reindex (light load) p99"),
    Info("reindex.during.max_ms", "find-similar during that reindex (light load) max"),
    Info("reindex.serve_rss_after_mib", "serve RSS after the reindex's handover", "MiB"),
    Info("restart.ready_s", "restart -> ready", "s"),
    Info("restart.single.p50_ms", "after restart: find-similar p50"),
    Info("restart.single.p99_ms", "after restart: find-similar p99"),
    Target("restart.single_p50_before_vs_after", "find-similar p50 between compactions / every "
           "point in the graph (after restart)", "<=", 1.1, "x"),
    Info("restart.memory.serve_rss_mib", "after restart: serve RSS", "MiB"),
    Target("restart.serve_rss_before_vs_after", "serve RSS, all written since start / after "
           "restart", "<=", 1.2, "x"),
)


Verdict = Literal["met", "missed", "n/a"]


def lookup(document: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted path, or None where any part is missing."""
    value: Any = document
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def verdict(target: Target, value: Any) -> Verdict:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    met = value <= target.threshold if target.op == "<=" else value >= target.threshold
    return "met" if met else "missed"


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _unit(unit: str) -> str:
    return "" if not unit else ("x" if unit == "x" else f" {unit}" if unit != "/s" else "/s")


def format_value(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{_number(value)}{_unit(unit)}"


def evaluate(results: Mapping[str, Any],
             targets: Sequence[Target | Info] = TARGETS) -> list[dict[str, Any]]:
    """One row per target (or info) whose section exists in ``results``: label, value, target,
    verdict ("met", "missed", "n/a"; None for info rows). A section that was not run (e.g.
    ``restart``) gives no rows; a missing value in a section that ran gives "n/a"."""
    rows = []
    for target in targets:
        if target.key.split(".")[0] not in results:
            continue
        value = lookup(results, target.key)
        row: dict[str, Any] = {"key": target.key, "label": target.label, "value": value,
                               "shown": format_value(value, target.unit), "unit": target.unit}
        if isinstance(target, Target):
            row |= {"target": target.describe(), "op": target.op, "threshold": target.threshold,
                    "verdict": verdict(target, value)}
        else:
            row |= {"target": None, "verdict": None}
        rows.append(row)
    return rows


def tally(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"met": 0, "missed": 0, "n/a": 0}
    for row in rows:
        if row["verdict"] is not None:
            counts[row["verdict"]] += 1
    return counts
