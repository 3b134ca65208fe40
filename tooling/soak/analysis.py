"""The arithmetic of a soak (pure, no I/O): percentiles of a window, slopes per hour, and the
verdict's rules.

Slopes are least-squares fits over the samples *between* the run's discontinuities, with one
shared slope and one intercept per segment: a restart resets the serve's memory and the broker's
log, a compaction or reindex swaps the index generation, and a step at such a moment is not a
drift. Excluded: the warm-up after the start and after the restart (``warmup_s``), the time a
job runs plus ``settle_s`` after it, and the restart's downtime. The fit over everything after
the warm-up, steps included, is reported too (``raw``), so a step that repeats with every job
(a leak per compaction, say) is visible even though the verdict judges the within-segment slope.

Compaction cycles (serve compacts by itself every few minutes under steady writes) make most
series a sawtooth: serve's RSS, the index on disk, search and write-to-searchable latency rise
between compactions with every point version written (updates and deletes leave the old
versions in the index until a compaction drops them; about 24 MB of RSS per 5-minute cycle at
20 writes/s) and fall at each. The within-segment slope of a sawtooth is the tooth, not a
drift. Where a run has two whole cycles in an epoch, a series is judged on its *envelope*
(``envelope``): the highest and the lowest value of each whole cycle, one shared slope per
restart and reindex epoch, the steeper of the two. What a compaction does not give back raises
the troughs; growth faster than compactions reclaim raises the peaks; either fails. The
within-segment slope is reported beside it (``within_per_hour``).

Besides:

* the local broker keeps every event in memory (tansu's memory-only storage applies no
  retention; Apache Kafka's retention bounds the production broker): its RSS grows with the
  events it holds, counted as the acknowledged writes since it started (it restarts with
  serve). Judged per event held: its RSS slope over the slope of the events it holds, in KB
  (2-3 KB measured); a leak that grows with the writes is only seen above that limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Tolerances:
    """The verdict's limits (growth only: a falling series always passes)."""

    rss_mb_per_hour: float = 20.0
    fds_per_hour: float = 10.0  # file descriptors that are not sockets
    sockets_per_hour: float = 60.0  # sockets follow the load (client connections held)
    disk_unexplained_mb_per_hour: float = 10.0  # per store
    search_p50_ms_per_hour: float = 5.0
    search_p99_ms_per_hour: float = 25.0
    searchable_p50_ms_per_hour: float = 25.0
    searchable_p99_ms_per_hour: float = 250.0
    min_rate_share: float = 0.9  # achieved / asked, writes and searches
    max_search_error_share: float = 0.005  # outside the restart's downtime
    broker_kb_per_event: float = 4.0  # the local broker's RSS per event it holds (measured 2-3)

    def describe(self) -> list[str]:
        return [
            f"serve's and the broker's RSS grow at most {self.rss_mb_per_hour} MB/h, their open "
            f"fds other than sockets at most {self.fds_per_hour}/h, their sockets at most "
            f"{self.sockets_per_hour}/h; the broker's RSS per event it holds at most "
            f"{self.broker_kb_per_event} KB",
            "every slope after warm-up: on the peaks and troughs of whole compaction cycles "
            "(the steeper) where an epoch has two, else within segments (module docstring)",
            f"every store's disk growth not explained by what it holds (rows, points) is at most "
            f"{self.disk_unexplained_mb_per_hour} MB/h: slope(MB) - MB per item x slope(items), "
            "MB per item the lower of its value after warm-up and at the end",
            f"search p50 drifts at most {self.search_p50_ms_per_hour} ms/h, p99 at most "
            f"{self.search_p99_ms_per_hour} ms/h; write-to-searchable p50 at most "
            f"{self.searchable_p50_ms_per_hour} ms/h, p99 at most {self.searchable_p99_ms_per_hour} ms/h",
            f"achieved write and search rates at least {self.min_rate_share:.0%} of the asked rates",
            f"failed searches at most {self.max_search_error_share:.1%} outside the restart's downtime",
            "the compaction and the reindex each end active; serve is ready again after the SIGKILL",
            "every check judged (a slope needs 3 samples in a segment after the warm-up)",
            "the chaos checker passes: every acknowledged create/update searchable at its last "
            "version, every acknowledged delete gone, database and index equal",
        ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Event:
    name: str  # compaction, reindex, restart
    start: float  # seconds since the run began
    end: float


def segment_of(t: float, events: Sequence[Event], *, warmup_s: float, settle_s: float) -> int | None:
    """Which judged segment a sample time belongs to (0 = the first), or None if excluded."""
    if t < warmup_s:
        return None
    segment = 0
    for event in sorted(events, key=lambda e: e.start):
        skip = warmup_s if event.name == "restart" else settle_s
        if t < event.start:
            return segment
        if t < event.end + skip:
            return None
        segment += 1
    return segment


@dataclass(frozen=True, slots=True)
class Fit:
    per_hour: float | None  # within-segment slope
    raw_per_hour: float | None  # one line through every sample after the warm-up
    points: int
    segments: int

    def as_dict(self) -> dict[str, Any]:
        return {"per_hour": _round(self.per_hour), "raw_per_hour": _round(self.raw_per_hour),
                "points": self.points, "segments": self.segments}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def fit(series: Sequence[tuple[float, float | None]], events: Sequence[Event], *,
        warmup_s: float, settle_s: float, min_points: int = 3) -> Fit:
    """Shared slope with an intercept per segment: b = sum (t - mean_s t)(y - mean_s y) /
    sum (t - mean_s t)^2 over segments s with at least ``min_points`` samples."""
    groups: dict[int, list[tuple[float, float]]] = {}
    after_warmup: list[tuple[float, float]] = []
    for t, y in series:
        if y is None:
            continue
        if t >= warmup_s:
            after_warmup.append((t, y))
        segment = segment_of(t, events, warmup_s=warmup_s, settle_s=settle_s)
        if segment is not None:
            groups.setdefault(segment, []).append((t, y))
    num = den = 0.0
    used = points = 0
    for group in groups.values():
        if len(group) < min_points:
            continue
        used += 1
        points += len(group)
        mt = sum(t for t, _ in group) / len(group)
        my = sum(y for _, y in group) / len(group)
        num += sum((t - mt) * (y - my) for t, y in group)
        den += sum((t - mt) ** 2 for t, _ in group)
    within = num / den * HOUR if den > 0 else None
    raw = None
    if len(after_warmup) >= min_points:
        mt = sum(t for t, _ in after_warmup) / len(after_warmup)
        my = sum(y for _, y in after_warmup) / len(after_warmup)
        d = sum((t - mt) ** 2 for t, _ in after_warmup)
        if d > 0:
            raw = sum((t - mt) * (y - my) for t, y in after_warmup) / d * HOUR
    return Fit(within, raw, points, used)


def envelope(series_: Sequence[tuple[float, float | None]], events: Sequence[Event], *,
             warmup_s: float, settle_s: float, min_points: int = 3) -> tuple[Fit, Fit]:
    """Slopes of the peaks and of the troughs of a sawtooth: per whole cycle (a judged segment
    from one compaction to the next, with at least ``min_points`` samples) its highest and
    lowest value at the segment's middle; one shared slope with an intercept per epoch (a
    restart or a reindex begins one: another process or another generation), epochs with at
    least 2 cycles. A segment cut by a restart or a reindex is no whole cycle: its peak or
    trough would depend on where it was cut, and one shorter than half the median cycle is
    left out (a peak grows with the cycle's length)."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for t, y in series_:
        segment = segment_of(t, events, warmup_s=warmup_s, settle_s=settle_s)
        if y is not None and segment is not None:
            groups.setdefault(segment, []).append((t, y))
    ordered = sorted(events, key=lambda e: e.start)
    epochs = [e for e in events if e.name in ("restart", "reindex")]
    cycles: list[list[tuple[float, float]]] = []
    peaks: list[tuple[float, float | None]] = []
    troughs: list[tuple[float, float | None]] = []
    for segment, group in groups.items():
        if len(group) < min_points or not 1 <= segment < len(ordered) or not all(
                ordered[i].name.endswith("compaction") for i in (segment - 1, segment)):
            continue
        # starting later than a sample after the settling: cut by a warm-up, not whole
        spacing = (group[-1][0] - group[0][0]) / (len(group) - 1)
        if group[0][0] - (ordered[segment - 1].end + settle_s) <= 1.5 * spacing:
            cycles.append(group)
    # a peak grows with its cycle's length: a cycle cut short (a compaction asked for by hand)
    # is not compared with whole ones
    lengths = sorted(g[-1][0] - g[0][0] for g in cycles)
    for group in cycles:
        if lengths and group[-1][0] - group[0][0] >= lengths[len(lengths) // 2] / 2:
            middle = (group[0][0] + group[-1][0]) / 2
            peaks.append((middle, max(y for _, y in group)))
            troughs.append((middle, min(y for _, y in group)))
    return (fit(peaks, epochs, warmup_s=0.0, settle_s=0.0, min_points=2),
            fit(troughs, epochs, warmup_s=0.0, settle_s=0.0, min_points=2))


def events_held(samples: Sequence[dict[str, Any]],
                events: Sequence[Event]) -> list[tuple[float, float | None]]:
    """Acknowledged writes since the last restart at each sample (the local broker's log: it
    restarts empty with serve), from the per-interval write counts."""
    restarts = sorted(e.start for e in events if e.name == "restart")
    out: list[tuple[float, float | None]] = []
    held, epoch = 0.0, 0
    for sample in samples:
        t = sample["t"]
        while epoch < len(restarts) and t >= restarts[epoch]:
            held, epoch = 0.0, epoch + 1
        count = (sample.get("write") or {}).get("count")
        held += float(count or 0)
        out.append((t, held))
    return out


def series(samples: Sequence[dict[str, Any]], *path: str) -> list[tuple[float, float | None]]:
    """``(t, value)`` of a nested key in every sample (None where a sample lacks it)."""
    out: list[tuple[float, float | None]] = []
    for sample in samples:
        value: Any = sample
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out.append((sample["t"], None if value is None else float(value)))
    return out


def _judged(series_: Sequence[tuple[float, float | None]], events: Sequence[Event], *,
            warmup_s: float, settle_s: float) -> list[tuple[float, float]]:
    return [(t, y) for t, y in series_ if y is not None and
            segment_of(t, events, warmup_s=warmup_s, settle_s=settle_s) is not None]


def end_value(series_: Sequence[tuple[float, float | None]]) -> float | None:
    values = [y for _, y in series_ if y is not None]
    return values[-1] if values else None


def _unexplained(s: Sequence[tuple[float, float | None]], items: Sequence[tuple[float, float | None]],
                 f: Fit, fit_: Any, judged: Any, entry: dict[str, Any] | None = None) -> float | None:
    """The slope of ``s`` (MB) less what the growth of ``items`` explains at MB per item, the
    lower of its value at the first and at the last judged sample; ``entry`` gets the figures."""
    if not any(y is not None for _, y in items) or f.per_hour is None:
        return f.per_hour
    fi = fit_(items)
    judged_mb = dict(judged(s))
    pairs = [(judged_mb[t], y) for t, y in judged(items) if t in judged_mb and y > 0]
    if not pairs or fi.per_hour is None:
        return f.per_hour
    per_item = min(pairs[0][0] / pairs[0][1], pairs[-1][0] / pairs[-1][1])
    if entry is not None:
        entry.update({"items_per_hour": _round(fi.per_hour), "items_end": end_value(items),
                      "mb_per_item": _round(per_item, 6)})
    # only growth of what it holds explains growth: SQLite keeps its pages when rows are
    # deleted (they are reused), so fewer rows, same size is flat
    return float(f.per_hour - per_item * max(fi.per_hour, 0.0))


def _check(name: str, value: float | None, limit: float, unit: str, *, at_least: bool = False,
           ) -> dict[str, Any]:
    ok = value is None or (value >= limit if at_least else value <= limit)
    return {"name": name, "value": _round(value), "limit": limit, "unit": unit,
            "ok": ok, "judged": value is not None}


def analyse(samples: Sequence[dict[str, Any]], events: Sequence[Event], *, warmup_s: float,
            settle_s: float, tolerances: Tolerances, rates: dict[str, dict[str, float]],
            jobs: dict[str, str | None], restarted: bool, checker_ok: bool,
            search_error_share: float | None) -> dict[str, Any]:
    """Slopes of every series and the verdict. ``rates``: per load kind, ``asked`` and
    ``achieved`` per second; ``jobs``: the end state of each admin job (None: never ran)."""
    cycles: dict[int, dict[str, Any]] = {}  # id(the Fit) -> how the envelope judged it

    def fit_(s: Sequence[tuple[float, float | None]]) -> Fit:
        """The judged trend: on the envelope of the compaction cycles where the run has two
        whole ones in an epoch (the steeper of peaks and troughs), else within segments."""
        within = fit(s, events, warmup_s=warmup_s, settle_s=settle_s)
        peaks, troughs = envelope(s, events, warmup_s=warmup_s, settle_s=settle_s)
        if peaks.per_hour is None or troughs.per_hour is None:
            return within
        judged_fit = Fit(max(peaks.per_hour, troughs.per_hour), within.raw_per_hour,
                         within.points, within.segments)
        cycles[id(judged_fit)] = {"within_per_hour": _round(within.per_hour),
                                  "peaks_per_hour": _round(peaks.per_hour),
                                  "troughs_per_hour": _round(troughs.per_hour),
                                  "cycles": peaks.points}
        return judged_fit

    def entry(f: Fit, s: Sequence[tuple[float, float | None]], unit: str) -> dict[str, Any]:
        return {**f.as_dict(), **cycles.get(id(f), {}), "end": _round(end_value(s)), "unit": unit}

    def judged(s: Sequence[tuple[float, float | None]]) -> list[tuple[float, float]]:
        return _judged(s, events, warmup_s=warmup_s, settle_s=settle_s)

    slopes: dict[str, dict[str, Any]] = {}
    checks: list[dict[str, Any]] = []

    roles = sorted({r for s in samples for r in s.get("processes", {})})
    for role in roles:
        for key, unit, limit in (("rss_mb", "MB/h", tolerances.rss_mb_per_hour),
                                 ("fds", "fds/h", None),
                                 ("files", "fds/h", tolerances.fds_per_hour),
                                 ("sockets", "fds/h", tolerances.sockets_per_hour)):
            s = series(samples, "processes", role, key)
            f = fit_(s)
            slopes[f"{role}.{key}"] = entry(f, s, unit)
            # a builder lives only while a job runs; all fds = files + sockets, judged apart
            if role not in ("serve", "broker") or limit is None:
                continue
            if (role, key) == ("broker", "rss_mb"):
                held = fit_(events_held(samples, events)).per_hour
                if held and held > 0 and f.per_hour is not None:
                    kb = max(f.per_hour, 0.0) / held * 1000
                    slopes["broker.rss_mb"]["kb_per_event"] = _round(kb)
                    checks.append(_check("broker rss_mb per event held", kb,
                                         tolerances.broker_kb_per_event, "KB"))
                else:
                    checks.append(_check(f"{role} {key} slope", f.per_hour, limit, unit))
            else:
                checks.append(_check(f"{role} {key} slope", f.per_hour, limit, unit))

    stores = sorted({k for s in samples for k in s.get("disk", {}).get("stores", {})})
    for store in stores:
        s = series(samples, "disk", "stores", store)
        f = fit_(s)
        store_entry = entry(f, s, "MB/h")
        item_key = "index" if store == "index" else store
        unexplained = _unexplained(s, series(samples, "items", item_key), f, fit_, judged,
                                   store_entry)
        store_entry["unexplained_per_hour"] = _round(unexplained)
        slopes[f"disk.{store}"] = store_entry
        checks.append(_check(f"disk {store} unexplained growth", unexplained,
                             tolerances.disk_unexplained_mb_per_hour, "MB/h"))

    latencies: tuple[tuple[str, tuple[str, ...], float], ...] = (
            ("search p50", ("search", "p50"), tolerances.search_p50_ms_per_hour),
            ("search p99", ("search", "p99"), tolerances.search_p99_ms_per_hour),
            ("write-to-searchable p50", ("searchable", "p50"), tolerances.searchable_p50_ms_per_hour),
            ("write-to-searchable p99", ("searchable", "p99"), tolerances.searchable_p99_ms_per_hour))
    for name, path, limit in latencies:
        s = series(samples, *path)
        f = fit_(s)
        slopes[name] = entry(f, s, "ms/h")
        checks.append(_check(f"{name} drift", f.per_hour, limit, "ms/h"))
    others: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("write ack p50", ("write", "p50")), ("write ack p99", ("write", "p99")),
        ("consumer lag", ("lag",)), ("outbox backlog", ("outbox_backlog",)),
        ("index points", ("points",)), ("index tombstones", ("tombstones",)))
    for name, path in others:
        s = series(samples, *path)
        slopes[name] = {**entry(fit_(s), s, "per h"),
                        "max": max((y for _, y in s if y is not None), default=None),
                        "unit": "per h"}

    for kind, rate in rates.items():
        share = rate["achieved"] / rate["asked"] if rate["asked"] else None
        checks.append(_check(f"{kind} rate achieved", share, tolerances.min_rate_share, "share",
                             at_least=True))
    checks.append(_check("failed searches outside downtime", search_error_share,
                         tolerances.max_search_error_share, "share"))
    for job, state in jobs.items():
        checks.append({"name": f"{job} ended active", "value": state, "limit": "active",
                       "unit": "", "ok": state == "active", "judged": True})
    checks.append({"name": "serve ready after SIGKILL", "value": restarted, "limit": True,
                   "unit": "", "ok": restarted, "judged": True})
    checks.append({"name": "chaos checker", "value": checker_ok, "limit": True, "unit": "",
                   "ok": checker_ok, "judged": True})
    return {"slopes": slopes, "checks": checks,
            # a slope that could not be fitted (a run too short for segments of 3 samples
            # after the warm-up) proves nothing: no PASS without every check judged
            "verdict": "PASS" if all(c["ok"] and c["judged"] for c in checks) else "FAIL",
            "rules": tolerances.describe()}


def rejudge(document: dict[str, Any], tolerances: Tolerances) -> dict[str, Any]:
    """The analysis of a stored soak document again, with these tolerances and this module's
    rules (what the run observed is kept: samples, events, rates, jobs, the checker's verdict,
    whether serve came back, the failed searches)."""
    config = document["config"]
    warmup_s = max(config["min_warmup_s"], config["warmup_share"] * config["minutes"] * 60)
    observed = {c["name"]: c for c in document["analysis"]["checks"]}
    return analyse(
        document["samples"], [Event(e["name"], e["start"], e["end"]) for e in document["events"]],
        warmup_s=warmup_s, settle_s=config["settle_s"], tolerances=tolerances,
        rates=document["rates"], jobs={k: (v or {}).get("state") for k, v in document["jobs"].items()},
        restarted=bool(observed["serve ready after SIGKILL"]["value"]),
        checker_ok=document["checker"]["ok"],
        search_error_share=observed["failed searches outside downtime"]["value"])
