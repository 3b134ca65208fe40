"""The soak's arithmetic (tooling/soak/analysis.py): a step at a restart or a generation swap
is not a drift, growth within the segments is; disk growth that the stored items explain
passes, growth beyond them does not; a run too short to fit a slope cannot PASS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tooling.soak.analysis import HOUR, Event, Fit, Tolerances, analyse, fit, percentile, segment_of

EVENTS = [Event("compaction", 1000, 1100), Event("restart", 2000, 2030)]
WARMUP_S, SETTLE_S = 300.0, 60.0


def _segment(t: float) -> int | None:
    return segment_of(t, EVENTS, warmup_s=WARMUP_S, settle_s=SETTLE_S)


def _fit(points: Sequence[tuple[float, float | None]], events: list[Event]) -> Fit:
    return fit(points, events, warmup_s=WARMUP_S, settle_s=SETTLE_S)


def test_segments_leave_out_warmup_jobs_and_the_restart() -> None:
    assert _segment(100) is None  # warm-up
    assert _segment(500) == 0
    assert _segment(1050) is None  # the job
    assert _segment(1120) is None  # settling after it
    assert _segment(1500) == 1
    assert _segment(2200) is None  # warm-up after the restart
    assert _segment(2400) == 2


def test_a_step_between_segments_is_not_a_slope_but_growth_within_them_is() -> None:
    times = range(0, 3600, 10)
    steps = [(float(t), 400.0 + (0 if t < 2000 else -300)) for t in times]  # restart: RSS drops
    flat = _fit(steps, EVENTS)
    assert flat.per_hour == pytest.approx(0.0)
    assert flat.raw_per_hour is not None and flat.raw_per_hour < -100  # steps included
    leak = _fit([(t, y + 30 * t / HOUR) for t, y in steps], EVENTS)
    assert leak.per_hour == pytest.approx(30.0)
    assert leak.segments == 3


def test_too_few_samples_fit_nothing() -> None:
    assert _fit([(400.0, 1.0), (410.0, 2.0)], []) == Fit(None, None, 0, 0)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99


def _samples(index_mb: Any, points: Any, serve_rss: Any = lambda t: 400.0) -> list[dict[str, Any]]:
    out = []
    for t in range(0, 3600, 10):
        out.append({"t": float(t),
                    "processes": {"serve": {"rss_mb": serve_rss(t), "fds": 50.0, "files": 30.0,
                                            "sockets": 20.0},
                                  "broker": {"rss_mb": 20.0, "fds": 16.0, "files": 6.0,
                                             "sockets": 10.0}},
                    "disk": {"stores": {"index": index_mb(t)}}, "items": {"index": points(t)},
                    "search": {"p50": 20.0, "p99": 80.0}, "searchable": {"p50": 200.0, "p99": 900.0},
                    "lag": 0.0, "outbox_backlog": 0.0, "points": points(t), "tombstones": 0.0})
    return out


def _verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return analyse(samples, EVENTS, tolerances=Tolerances(),
                   rates={"write": {"asked": 20, "achieved": 20}}, jobs={"compaction": "active"},
                   restarted=True, checker_ok=True, search_error_share=0.0,
                   warmup_s=WARMUP_S, settle_s=SETTLE_S)


def test_disk_growth_the_points_explain_passes() -> None:
    # 1 MB per 1000 points, 3600 points/hour: 3.6 MB/h, all of it explained
    document = _verdict(_samples(lambda t: (10_000 + t) / 1000, lambda t: 10_000.0 + t))
    assert document["slopes"]["disk.index"]["unexplained_per_hour"] == pytest.approx(0, abs=0.01)
    assert document["verdict"] == "PASS", document["checks"]


def test_disk_growth_beyond_the_points_fails() -> None:
    document = _verdict(_samples(lambda t: 20 + 50 * t / HOUR, lambda t: 10_000.0))
    check = next(c for c in document["checks"] if c["name"] == "disk index unexplained growth")
    assert not check["ok"] and check["value"] == pytest.approx(50, rel=0.01)
    assert document["verdict"] == "FAIL"


def test_an_rss_leak_fails_and_an_unjudged_slope_is_no_pass() -> None:
    leaking = _verdict(_samples(lambda t: 20.0, lambda t: 1.0, serve_rss=lambda t: 400 + 40 * t / HOUR))
    assert leaking["verdict"] == "FAIL"
    assert not next(c for c in leaking["checks"] if c["name"] == "serve rss_mb slope")["ok"]
    short = analyse(_samples(lambda t: 20.0, lambda t: 1.0)[:20], EVENTS, tolerances=Tolerances(),
                    rates={}, jobs={}, restarted=True, checker_ok=True, search_error_share=0.0,
                   warmup_s=WARMUP_S, settle_s=SETTLE_S)
    assert short["verdict"] == "FAIL"
