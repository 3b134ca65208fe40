"""The soak's arithmetic (tooling/soak/analysis.py): a step at a restart or a generation swap
is not a drift, growth within the segments is; disk growth that the stored items explain
passes, growth beyond them does not; serve's RSS is judged on the peaks and troughs of its
cycles between compactions (a bounded sawtooth passes, rising troughs fail); the broker's on the
growth the events it holds do not explain; a run too short to fit a slope cannot PASS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tooling.soak.analysis import (
    HOUR,
    Event,
    Fit,
    Tolerances,
    analyse,
    envelope,
    events_held,
    fit,
    percentile,
    rejudge,
    segment_of,
)

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


def _samples(index_mb: Any, points: Any, serve_rss: Any = lambda t: 400.0,
             broker_rss: Any = lambda t: 20.0, writes: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for t in range(0, 3600, 10):
        out.append({"t": float(t),
                    "processes": {"serve": {"rss_mb": serve_rss(t), "fds": 50.0, "files": 30.0,
                                            "sockets": 20.0},
                                  "broker": {"rss_mb": broker_rss(t), "fds": 16.0, "files": 6.0,
                                             "sockets": 10.0}},
                    "write": {"count": writes},
                    "disk": {"stores": {"index": index_mb(t)}}, "items": {"index": points(t)},
                    "search": {"p50": 20.0, "p99": 80.0}, "searchable": {"p50": 200.0, "p99": 900.0},
                    "lag": 0.0, "outbox_backlog": 0.0, "points": points(t), "tombstones": 0.0})
    return out


def _verdict(samples: list[dict[str, Any]], events: list[Event] = EVENTS) -> dict[str, Any]:
    return analyse(samples, events, tolerances=Tolerances(),
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
    # one compaction, so no two whole cycles: judged on the within-segment slope
    assert not next(c for c in leaking["checks"] if c["name"] == "serve rss_mb slope")["ok"]
    short = analyse(_samples(lambda t: 20.0, lambda t: 1.0)[:20], EVENTS, tolerances=Tolerances(),
                    rates={}, jobs={}, restarted=True, checker_ok=True, search_error_share=0.0,
                   warmup_s=WARMUP_S, settle_s=SETTLE_S)
    assert short["verdict"] == "FAIL"


# A compaction every 300 s from 400 s on (each takes 20 s), a restart at 2000 s.
CYCLES = [Event("auto-compaction", float(t), float(t) + 20) for t in range(400, 3600, 300)
          ] + [Event("restart", 2000, 2030)]


def _sawtooth(t: float, trough_rise_per_hour: float = 0.0) -> float:
    """+24 MB over each 300-s cycle, back down at each compaction."""
    return 500 + 24 * ((t - 400) % 300) / 300 + trough_rise_per_hour * t / HOUR


def test_a_bounded_sawtooth_passes_on_its_envelope() -> None:
    document = _verdict(_samples(lambda t: 20.0, lambda t: 1.0, serve_rss=_sawtooth), CYCLES)
    rss = document["slopes"]["serve.rss_mb"]
    assert rss["within_per_hour"] > 200  # the tooth, within a cycle: reported, not judged
    assert rss["per_hour"] == pytest.approx(0, abs=3)
    assert rss["peaks_per_hour"] == pytest.approx(0, abs=3)
    assert rss["troughs_per_hour"] == pytest.approx(0, abs=3)
    assert rss["cycles"] >= 6
    assert document["verdict"] == "PASS", [c for c in document["checks"] if not c["ok"]]


def test_memory_a_compaction_does_not_give_back_fails() -> None:
    document = _verdict(_samples(lambda t: 20.0, lambda t: 1.0,
                                 serve_rss=lambda t: _sawtooth(t, trough_rise_per_hour=60)), CYCLES)
    assert document["slopes"]["serve.rss_mb"]["troughs_per_hour"] == pytest.approx(60, rel=0.1)
    assert document["verdict"] == "FAIL"
    assert not next(c for c in document["checks"] if c["name"] == "serve rss_mb slope")["ok"]


def test_latency_that_rises_between_compactions_and_falls_at_each_is_no_drift() -> None:
    samples = _samples(lambda t: 20.0, lambda t: 1.0)
    for sample in samples:
        sample["search"]["p50"] = _sawtooth(sample["t"]) - 480  # 20-44 ms in every cycle
    document = _verdict(samples, CYCLES)
    assert document["slopes"]["search p50"]["within_per_hour"] > 200
    assert next(c for c in document["checks"] if c["name"] == "search p50 drift")["ok"]


def test_envelope_of_a_flat_series_is_flat_and_needs_cycles() -> None:
    flat = [(float(t), 300.0) for t in range(0, 3600, 10)]
    peaks, troughs = envelope(flat, CYCLES, warmup_s=WARMUP_S, settle_s=SETTLE_S)
    assert peaks.per_hour == troughs.per_hour == pytest.approx(0.0)
    assert envelope(flat, [], warmup_s=WARMUP_S, settle_s=SETTLE_S)[0].per_hour is None  # one cycle


def test_broker_growth_per_event_it_holds_is_judged() -> None:
    """150 writes per 10 s: 54,000 events/h. 2 KB each is 108 MB/h and passes; 5 KB each (or
    2 KB and 160 MB/h more) fails. A leak that grows with the writes and stays under the limit
    per event cannot be told from the log itself: the limit is the resolution."""
    def held(t: float, kb: float = 2.0) -> float:
        return 20 + kb / 1000 * 150 * (t // 10 + 1 if t < 2000 else (t - 2000) // 10 + 1)

    samples = _samples(lambda t: 20.0, lambda t: 1.0, broker_rss=held, writes=150)
    assert events_held(samples, EVENTS)[-1][1] == pytest.approx(150 * 160)
    passing = _verdict(samples)
    assert passing["slopes"]["broker.rss_mb"]["per_hour"] == pytest.approx(108, rel=0.02)
    assert passing["slopes"]["broker.rss_mb"]["kb_per_event"] == pytest.approx(2.0, rel=0.02)
    assert passing["verdict"] == "PASS", [c for c in passing["checks"] if not c["ok"]]
    for rss in (lambda t: held(t, kb=5.0), lambda t: held(t) + 160 * t / HOUR):
        leaking = _verdict(_samples(lambda t: 20.0, lambda t: 1.0, writes=150, broker_rss=rss))
        check = next(c for c in leaking["checks"] if c["name"].startswith("broker rss_mb"))
        assert not check["ok"] and check["value"] > 4
    idle = _verdict(_samples(lambda t: 20.0, lambda t: 1.0, broker_rss=lambda t: 20 + 30 * t / HOUR))
    assert idle["verdict"] == "FAIL"  # no events held: growth is judged as a plain slope


def test_a_stored_soak_is_judged_again_with_other_limits() -> None:
    """scripts/soak.py --rejudge: what the run observed stays, the rules and limits are today's."""
    samples = _samples(lambda t: 20.0, lambda t: 1.0, serve_rss=_sawtooth)
    first = _verdict(samples, CYCLES)
    document = {"config": {"min_warmup_s": 30.0, "warmup_share": WARMUP_S / 3600, "minutes": 60.0,
                           "settle_s": SETTLE_S},
                "samples": samples, "analysis": first,
                "events": [{"name": e.name, "start": e.start, "end": e.end} for e in CYCLES],
                "rates": {"write": {"asked": 20, "achieved": 20}},
                "jobs": {"compaction": {"state": "active"}},
                "checker": {"ok": True}}
    assert rejudge(document, Tolerances())["verdict"] == first["verdict"] == "PASS"
    strict = rejudge(document, Tolerances(search_p99_ms_per_hour=-1.0))
    assert strict["verdict"] == "FAIL"
    assert [c for c in strict["checks"] if not c["ok"]][0]["name"] == "search p99 drift"
