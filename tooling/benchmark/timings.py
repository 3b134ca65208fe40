"""Where time goes: the ``Server-Timing`` stages of find-similar, and the service's own stage
histograms of write -> searchable between two ``/metrics`` scrapes (pure, unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tooling.benchmark.stats import percentile


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``Server-Timing: queue;dur=0.1, embed;dur=3.2;desc="x", search;dur=0.4`` -> {name: ms}.

    Metrics without a (numeric) ``dur`` are left out; a name given twice is summed (the spec
    allows repeats); names are lower-cased. Malformed parts are skipped, never raised on."""
    stages: dict[str, float] = {}
    if not header:
        return stages
    for metric in _split_outside_quotes(header, ","):
        params = [p.strip() for p in _split_outside_quotes(metric, ";")]
        name = params[0].lower() if params else ""
        if not name or "=" in name:
            continue
        for param in params[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            try:
                duration = float(value.strip().strip('"'))
            except ValueError:
                break
            if math.isfinite(duration):
                stages[name] = stages.get(name, 0.0) + duration
            break
    return stages


def stage_medians(timings: Sequence[Mapping[str, float]],
                  stages: Sequence[str] = ("queue", "embed", "search", "serialize"),
                  ) -> dict[str, float | None]:
    """Median per stage over the responses that reported it; None for a stage none reported.
    Stages the server sent beyond ``stages`` are included too."""
    names = list(stages) + sorted({n for t in timings for n in t} - set(stages))
    out: dict[str, float | None] = {}
    for name in names:
        values = [t[name] for t in timings if name in t]
        out[name] = round(percentile(values, 50), 3) if values else None
    return out


STAGES = {
    "event -> broker": "handwerk_ml_event_to_broker_seconds",
    "broker -> fetched": "handwerk_ml_broker_to_fetch_seconds",
    "batch gather": "handwerk_ml_batch_gather_seconds",
    "batch apply": "handwerk_ml_batch_apply_seconds",
    "embed (in apply)": "handwerk_ml_embed_seconds",
    "index write (in apply, with flush)": "handwerk_ml_index_write_seconds",
    "offset commit (after)": "handwerk_ml_offset_commit_seconds",
    "server event -> written": "handwerk_ml_write_to_searchable_seconds",
    "relay publish (batch)": "handwerk_ml_relay_publish_seconds",
}
"""Where write -> searchable time goes: the service's own stage histograms (``/metrics``)."""

Histograms = dict[str, dict[float, float]]  # name -> {upper bound: cumulative count}


def parse_histograms(text: str) -> Histograms:
    """Cumulative bucket counts of every histogram (labels summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = out.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return out


def quantile(q: float, before: Mapping[float, float], after: Mapping[float, float]) -> float | None:
    """``histogram_quantile`` over the increase between two scrapes (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def stage_quantiles(before: str, after: str) -> dict[str, dict[str, float | None]]:
    """p50/p99 (ms) of every ``STAGES`` histogram between two ``/metrics`` scrapes."""
    h0, h1 = parse_histograms(before), parse_histograms(after)
    stages: dict[str, dict[str, float | None]] = {}
    for label, name in STAGES.items():
        if name not in h1:
            continue
        q = {p: quantile(p / 100, h0.get(name, {}), h1[name]) for p in (50, 99)}
        stages[label] = {f"p{p}_ms": None if v is None else round(v * 1000, 1)
                         for p, v in q.items()}
    return stages
