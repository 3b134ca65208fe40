"""The pure parts of `handwerk bench` (tooling/benchmark/): no server, no model, no timing."""

from __future__ import annotations

import numpy as np
import pytest

from tooling.benchmark import (
    TARGETS,
    Info,
    QueryGenerator,
    Target,
    brute_force_top_k,
    cpu_model,
    evaluate,
    format_value,
    latency_summary,
    lookup,
    parse_server_timing,
    percentile,
    recall_at_k,
    stage_medians,
    stage_quantiles,
    tally,
    verdict,
)


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.5]
    for p in (0, 1, 25, 50, 90, 99, 100):
        assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary == {"n": 100, "p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0}
    assert latency_summary([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_recall_at_k() -> None:
    exact = [str(i) for i in range(10)]
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(list(reversed(exact)), exact) == 1.0  # order inside the top-k is free
    assert recall_at_k(exact[:9] + ["x"], exact) == 0.9
    assert recall_at_k([], exact) == 0.0
    # only the first k of each count
    assert recall_at_k(["x"] * 10 + exact, exact, k=10) == 0.0
    assert recall_at_k(exact, exact + ["10", "11"], k=5) == 1.0
    # fewer than k projects in the index: the share of what exists
    assert recall_at_k(["a", "b", "c"], ["a", "b", "d"], k=10) == pytest.approx(2 / 3)
    assert recall_at_k([], [], k=10) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(exact, exact, k=0)


def test_brute_force_top_k_is_exact_and_ordered() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(500, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    vector = matrix[42] + 0.01
    top = brute_force_top_k(matrix, vector, 10)
    scores = matrix @ vector
    assert list(top) == list(np.argsort(-scores)[:10])
    assert top[0] == 42
    assert len(brute_force_top_k(matrix[:3], vector, 10)) == 3


@pytest.mark.parametrize(("header", "expected"), [
    (None, {}),
    ("", {}),
    ("queue;dur=0.12, embed;dur=3.4, search;dur=0.8, serialize;dur=0.05",
     {"queue": 0.12, "embed": 3.4, "search": 0.8, "serialize": 0.05}),
    ('embed;desc="query, one text";dur=3', {"embed": 3.0}),          # comma inside quotes
    ('Embed;dur="2.5"', {"embed": 2.5}),                              # quoted value, case
    ("cache;desc=hit, search;dur=1", {"search": 1.0}),                # no dur: left out
    ("embed;dur=abc, search;dur=1.5", {"search": 1.5}),               # not a number
    ("db;dur=1, db;dur=2", {"db": 3.0}),                              # repeated: summed
    ("search ; dur = 0.4 ,", {"search": 0.4}),                        # spaces, trailing comma
    ("dur=4", {}),                                                    # no name
    ("search;dur=inf", {}),
])
def test_parse_server_timing(header: str | None, expected: dict[str, float]) -> None:
    assert parse_server_timing(header) == pytest.approx(expected)


def test_stage_medians() -> None:
    timings = [{"embed": 3.0, "search": 1.0}, {"embed": 5.0, "search": 2.0, "extra": 9.0},
               {"embed": 4.0}]
    assert stage_medians(timings) == {"queue": None, "embed": 4.0, "search": 1.5,
                                      "serialize": None, "extra": 9.0}
    assert stage_medians([]) == {"queue": None, "embed": None, "search": None, "serialize": None}


def test_verdict() -> None:
    at_most = Target("a.b", "x", "<=", 5)
    at_least = Target("a.b", "x", ">=", 0.9, "x")
    assert verdict(at_most, 5) == "met"
    assert verdict(at_most, 5.01) == "missed"
    assert verdict(at_least, 0.9) == "met"
    assert verdict(at_least, 0.89) == "missed"
    for missing in (None, "n/a", float("nan"), True):
        assert verdict(at_most, missing) == "n/a"


def test_lookup() -> None:
    document = {"a": {"b": {"c": 1}}, "x": None}
    assert lookup(document, "a.b.c") == 1
    assert lookup(document, "a.b.d") is None
    assert lookup(document, "x.y") is None


def test_evaluate_rows_and_tally() -> None:
    targets = (Target("single.p50_ms", "p50", "<=", 5), Target("single.p99_ms", "p99", "<=", 15),
               Target("throughput.requests_per_s", "rps", ">=", 1000, "/s"),
               Info("ingest.raw_embed_rate_per_s", "raw", "/s"),
               Target("restart.single.p50_ms", "after restart", "<=", 5))
    results = {"single": {"p50_ms": 4.2, "p99_ms": 20.0},
               "throughput": {"requests_per_s": None},
               "ingest": {"raw_embed_rate_per_s": 45.3}}
    rows = evaluate(results, targets)
    assert [(r["key"], r["verdict"]) for r in rows] == [
        ("single.p50_ms", "met"), ("single.p99_ms", "missed"),
        ("throughput.requests_per_s", "n/a"), ("ingest.raw_embed_rate_per_s", None)]
    assert rows[0]["target"] == "≤ 5 ms" and rows[0]["shown"] == "4.20 ms"
    assert rows[2]["target"] == "≥ 1,000/s" and rows[2]["shown"] == "n/a"
    assert rows[3]["target"] is None and rows[3]["shown"] == "45.3/s"
    assert tally(rows) == {"met": 1, "missed": 1, "n/a": 1}


def test_every_target_of_the_issue_is_in_the_table() -> None:
    targets = {t.key: (t.op, t.threshold) for t in TARGETS if isinstance(t, Target)}
    assert targets == {
        # issue 22: against the raw embedder on every core, without and with 10 searches/s
        "ingest_quiet.pipeline_vs_raw": (">=", 0.85), "ingest.pipeline_vs_raw": (">=", 0.85),
        "reindex.vs_raw": (">=", 0.85), "compaction.p50_vs_quiet": ("<=", 1.2),
        "restart.single_p50_before_vs_after": ("<=", 1.1),
        "restart.serve_rss_before_vs_after": ("<=", 1.2),
        "during_ingest.p99_ms": ("<=", 50), "during_ingest.max_ms": ("<=", 200),
        "single.p50_ms": ("<=", 5), "single.p99_ms": ("<=", 15),
        "throughput.requests_per_s": (">=", 1000), "throughput.p99_ms": ("<=", 50),
        "batch5.p50_ms": ("<=", 15),
        "estimate.p50_ms": ("<=", 50),  # issue 21: the original service's Prediction target
        "list_first.p50_ms": ("<=", 5), "list_deep.p50_ms": ("<=", 5),
        "list_cursor.p50_ms": ("<=", 5),
        "freshness.p50_ms": ("<=", 50), "freshness.p99_ms": ("<=", 150),
        "memory.serve_rss_mib": ("<=", 1024),
        "quality.recall_at_10": (">=", 0.95),
    }


def test_format_value() -> None:
    assert format_value(None, "ms") == "n/a"
    assert format_value(1234.4, "/s") == "1,234/s"
    assert format_value(0.912, "x") == "0.91x"
    assert format_value(0.97, "") == "0.97"
    assert format_value(512.3, "MiB") == "512 MiB"
    assert format_value(12.34, "ms") == "12.3 ms"


def test_queries_are_distinct_varied_and_deterministic() -> None:
    queries = QueryGenerator(seed=5).take(20_000)
    assert len(set(queries)) == len(queries)
    assert QueryGenerator(seed=5).take(100) == queries[:100]
    assert QueryGenerator(seed=6).take(100) != queries[:100]
    assert all(q.strip() and len(q) < 300 for q in queries)
    words = {w for q in queries[:1000] for w in q.split()}
    assert len(words) > 200  # varied, not one phrase with a counter


def test_cpu_model() -> None:
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"
    assert cpu_model(text) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert cpu_model("processor : 0\n") is None


class _CountingEncoder:
    """Stands in for the embedder in the bench's vector bookkeeping (no model needed): a
    deterministic vector per text, and a count of the texts it was asked to encode."""

    model_name = "counting"
    dimension = 4

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str], purpose: str) -> np.ndarray:
        self.encoded += len(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0, 2.0] for t in texts], np.float32)


def test_all_vectors_keeps_them_between_runs_and_reuses_a_prefix(tmp_path) -> None:
    from tooling.benchmark import all_vectors

    texts = [f"project text {i}" for i in range(100)]
    encoder = _CountingEncoder()
    first, report = all_vectors(encoder, texts, 8, tmp_path, lambda _: None)
    assert report["embedded"] == 100 and report["reused"] == 0
    again = _CountingEncoder()
    second, report = all_vectors(again, texts[:40], 8, tmp_path, lambda _: None)
    assert (report["embedded"], report["reused"]) == (0, 40)
    assert again.encoded == 0  # not even a warm-up: nothing was missing
    np.testing.assert_array_equal(second, first[:40])
    more, report = all_vectors(_CountingEncoder(), [*texts[:10], "a new text"], 8, tmp_path,
                               lambda _: None)
    assert report["embedded"] == 1 and report["reused"] == 10
    np.testing.assert_array_equal(more[:10], first[:10])


def test_stage_quantiles_read_the_increase_between_two_scrapes() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    embed = Histogram("handwerk_ml_embed_seconds", "embed", registry=registry,
                      buckets=(0.01, 0.02, 0.04, 0.08))
    for _ in range(100):  # before the window: must not count
        embed.observe(0.07)
    before = generate_latest(registry).decode()
    for _ in range(100):
        embed.observe(0.015)
    after = generate_latest(registry).decode()
    stages = stage_quantiles(before, after)
    assert list(stages) == ["embed (in apply)"]  # stages without a histogram are left out
    assert stages["embed (in apply)"]["p50_ms"] == pytest.approx(15.0)  # linear in (10, 20]
    assert stages["embed (in apply)"]["p99_ms"] == pytest.approx(19.9)


def test_ratio_of_missing_or_zero_is_none() -> None:
    from tooling.benchmark.stats import ratio

    assert ratio(18.1, 15.3) == 1.183
    assert ratio(None, 2.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
