"""The model-switch gate judges quality, not sameness (real broker, SQLite, Qdrant Edge, models,
HTTP): a worse model is refused with the numbers, a better one that disagrees with the live
model passes without --force, and --force still overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handwerk.embedding.specs import E5_ONNX_MODEL_NAME
from tests.conftest import Stack
from tests.integration.test_reindex import finished, generations, seed, serving, start, stats
from tests.models import tiny_model

pytestmark = pytest.mark.integration


def test_a_worse_model_is_refused_with_the_numbers_unless_forced(
        stack: Stack, tmp_path: Path) -> None:
    """A tiny random BERT (one 32-d layer, weights from a seed) against the default model."""
    worse = tiny_model(tmp_path / "random-model", seed=1)
    with serving(stack, tmp_path) as server, server.client() as http:
        seed(http, 30)
        minilm = stats(http)
        start(http, model=str(worse))
        job = finished(http)
        assert job["state"] == "refused", job
        error, figures = job["error"], job["figures"]
        assert "nDCG@10 on the relevance benchmark" in error and "--force" in error, error
        ndcg = figures["ndcg_at_10"]
        assert ndcg["new"] < ndcg["live"] - 0.05, figures
        assert f"new model {ndcg['new']:.3f}, live model {ndcg['live']:.3f}" in error, error
        by_class = figures["ndcg_at_10_by_class"]
        worst = max(by_class, key=lambda c: by_class[c]["live"] - by_class[c]["new"])
        assert (f"worst class {worst}: new {by_class[worst]['new']:.3f}, live "
                f"{by_class[worst]['live']:.3f}") in error, error
        assert len(by_class) == 8
        assert 0.0 <= figures["agreement_at_10"] <= 1.0  # still reported, as information
        assert stats(http)["generation"] == minilm["generation"]
        assert job["generation"] not in generations(http)
        # the live model's score is kept by its content key for the next switch
        cached = json.loads((tmp_path / "data" / "model-quality.json").read_text())
        assert {round(e["overall"], 4) for e in cached.values()} == {ndcg["live"], ndcg["new"]}

        start(http, model=str(worse), force=True)
        job = finished(http)
        assert job["state"] == "active", job
        assert stats(http)["model"] == str(worse.resolve())


def test_a_better_model_passes_without_force(stack: Stack, tmp_path: Path) -> None:
    """multilingual-e5-small (int8 through ONNX Runtime, built in the builder child) against
    the bundled English MiniLM serving an index made before e5 was the default: it finds
    other projects (agreement below 1), and better ones, so the gate lets it through."""
    with serving(stack, tmp_path, HANDWERK_MODEL_PATH="bundled") as server, server.client() as http:
        seed(http, 30)
        start(http, model="e5")
        job = finished(http, timeout=400)
        assert job["state"] == "active", job
        figures = job["figures"]
        assert figures["ndcg_at_10"]["new"] > figures["ndcg_at_10"]["live"] + 0.05, figures
        assert figures["agreement_at_10"] < 1.0, figures
        assert stats(http)["model"] == E5_ONNX_MODEL_NAME
