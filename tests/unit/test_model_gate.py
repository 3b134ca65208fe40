"""The model-switch gate's rule (quality, not sameness), its score cache and the offline scoring
it relies on: exact top 10 in numpy over the benchmark corpus. No server, no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handwerk.generations.quality import QualityRule, ScoreCache, refusal
from handwerk.relevance.offline import ModelScore, benchmark, score_model, top_k
from handwerk.settings import Settings

RULE = QualityRule(max_ndcg_drop=0.01, max_class_drop=0.05)
LIVE = ModelScore(0.50, {"own_words": 0.60, "paraphrase_de": 0.30, "keywords": 0.55}, 400)


def candidate(overall: float, **classes: float) -> ModelScore:
    return ModelScore(overall, {**LIVE.classes, **classes}, 400)


def test_a_model_as_good_or_better_passes() -> None:
    assert refusal(LIVE, LIVE, RULE) is None
    assert refusal(LIVE, candidate(0.70, own_words=0.80, paraphrase_de=0.60), RULE) is None


def test_the_overall_threshold_is_inclusive_and_refuses_past_it() -> None:
    assert refusal(LIVE, candidate(0.49), RULE) is None  # exactly 0.01 lower
    why = refusal(LIVE, candidate(0.4899), RULE)
    assert why is not None
    assert "new model 0.490, live model 0.500" in why and "0.01" in why and "--force" in why


def test_one_class_dropping_too_far_refuses_even_when_overall_improves() -> None:
    assert refusal(LIVE, candidate(0.60, paraphrase_de=0.25), RULE) is None  # exactly 0.05
    why = refusal(LIVE, candidate(0.60, paraphrase_de=0.2499), RULE)
    assert why is not None
    assert "worst class paraphrase_de: new 0.250, live 0.300" in why and "0.05" in why
    assert "new model 0.600, live model 0.500" in why  # the overall is named as well


def test_a_refusal_for_the_overall_names_the_class_that_dropped_most() -> None:
    why = refusal(LIVE, candidate(0.40, own_words=0.58, keywords=0.45), RULE)
    assert why is not None and "worst class keywords: new 0.450, live 0.550" in why


def test_both_thresholds_come_from_the_rule() -> None:
    loose = QualityRule(max_ndcg_drop=0.2, max_class_drop=0.3)
    assert refusal(LIVE, candidate(0.31, keywords=0.26), loose) is None
    assert refusal(LIVE, candidate(0.29), loose) is not None
    assert refusal(LIVE, candidate(0.5, keywords=0.24), loose) is not None
    strict = QualityRule(max_ndcg_drop=0.0, max_class_drop=0.0)
    assert refusal(LIVE, candidate(0.4999), strict) is not None
    assert refusal(LIVE, candidate(0.5, own_words=0.5999), strict) is not None


def test_the_thresholds_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings().generations
    assert (defaults.max_ndcg_drop, defaults.max_class_drop) == (0.01, 0.05)
    monkeypatch.setenv("HANDWERK_REINDEX_MAX_NDCG_DROP", "0.02")
    monkeypatch.setenv("HANDWERK_REINDEX_MAX_CLASS_DROP", "0.1")
    monkeypatch.setenv("HANDWERK_REINDEX_QUALITY_PROJECTS", "120")
    generations = Settings().generations
    assert (generations.max_ndcg_drop, generations.max_class_drop,
            generations.quality_projects) == (0.02, 0.1, 120)
    assert Settings(generations={"max_ndcg_drop": 0.0}).generations.max_ndcg_drop == 0.0


def test_the_score_cache_round_trips_and_survives_a_broken_file(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path / "model-quality.json", keep=2)
    assert cache.get("a") is None
    cache.put("a", LIVE)
    assert cache.get("a") == LIVE and cache.get("b") is None
    cache.put("b", candidate(0.1))
    cache.put("c", candidate(0.2))
    assert cache.get("a") is None and cache.get("c") == candidate(0.2)  # the newest two kept
    (tmp_path / "model-quality.json").write_text("{not json")
    assert cache.get("c") is None
    cache.put("c", LIVE)
    assert cache.get("c") == LIVE


BENCH = benchmark(60)


def test_an_oracle_model_scores_one_and_a_random_one_less() -> None:
    """Documents as the unit vectors and each query as its grades: cosine order is the ideal
    order, so every class scores 1.0; random vectors score lower."""
    documents = np.eye(len(BENCH.documents), dtype=np.float32)
    oracle = BENCH.grades.astype(np.float32) + 1e-3  # never all zero (cosine of a zero vector)
    perfect = score_model(BENCH, documents, oracle)
    assert perfect.overall == 1.0 and set(perfect.classes.values()) == {1.0}
    assert perfect.queries == len(BENCH.queries) > 300
    rng = np.random.default_rng(0)
    noise = score_model(BENCH, rng.normal(size=(len(BENCH.documents), 32)).astype(np.float32),
                        rng.normal(size=(len(BENCH.queries), 32)).astype(np.float32))
    assert noise.overall < 0.6


def test_filters_are_applied_as_the_index_applies_them() -> None:
    filtered = [i for i, q in enumerate(BENCH.queries) if q.intent.filters]
    assert filtered
    rng = np.random.default_rng(1)
    found = top_k(BENCH, rng.normal(size=(len(BENCH.documents), 8)).astype(np.float32),
                  rng.normal(size=(len(BENCH.queries), 8)).astype(np.float32))
    for i in filtered:
        assert all(BENCH.allowed[i, j] for j in found[i])
        assert len(found[i]) == min(10, int(BENCH.allowed[i].sum()))
