"""The model-switch gate: is the candidate model at least as good as the live one?

Quality, not sameness: each model is scored on the relevance benchmark (``handwerk.relevance``:
a deterministic German/English corpus, graded queries in eight classes, nDCG@10), embedding the
benchmark corpus itself with exact cosine top 10, so the score is the model's and not the
user's data's. A candidate passes when its overall nDCG@10 is at most ``max_ndcg_drop`` below
the live model's and no class drops by more than ``max_class_drop`` (``refusal``). A model's
score is cached by its content key (and the benchmark's fingerprint) in the data folder, so the
live model is measured once, not at every switch.

agreement@k stays as information: the mean share of the live generation's top k that the
candidate's top k also holds, over a fixed set of estimator-style queries on the user's data.
A better model disagrees with a worse one by definition, so it is no longer a gate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from handwerk.files import write_json_atomically
from handwerk.index.protocol import SearchFilters
from handwerk.relevance.offline import Benchmark, ModelScore, benchmark, score_model

if TYPE_CHECKING:
    from handwerk.embedding.embedder import Embedder
    from handwerk.index.active import IndexTarget

log = logging.getLogger(__name__)

QUERIES = (
    "Einbauküche aus Eiche mit Kochinsel",
    "kitchen with oak fronts and an island",
    "Treppe aus Buche mit Podest und Geländer",
    "spiral staircase in steel and walnut",
    "Kleiderschrank mit Schiebetüren nach Maß",
    "built-in wardrobe under a sloped roof",
    "Badmöbel aus Teak, wasserfest lackiert",
    "Massivholz Esstisch für acht Personen",
    "bookshelf wall with a ladder, birch plywood",
    "Dielenboden aus Lärche im Altbau verlegen",
    "Haustür aus Eiche mit Glaseinsatz",
    "office furniture, desks and cabinets for a small agency",
    "Terrassendeck aus Douglasie",
    "Fenster aus Kiefer, Denkmalschutz",
    "Sauna aus Zirbe für den Keller",
    "garden shed, larch cladding",
    "Wandverkleidung mit Akustikpaneelen",
    "children's bunk bed from maple",
    "Kücheninsel mit Granitplatte und Eichenfronten in München",
    "restoration of an old farmhouse staircase",
)


async def top_ids(target: IndexTarget, k: int) -> list[list[str]]:
    vectors = await target.embedder.embed_queries(list(QUERIES))
    hits = await target.index.search_batch([v.tolist() for v in vectors], top_k=k,
                                           threshold=-1.0, filters=SearchFilters())
    return [[h.project_id for h in row] for row in hits]


async def agreement_at_k(live: IndexTarget, candidate: IndexTarget, *, k: int = 10) -> float:
    """1.0: identical top k for every query; 0.0: nothing in common. An empty live index
    agrees with anything."""
    expected, got = await top_ids(live, k), await top_ids(candidate, k)
    shares = [len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True) if e]
    return sum(shares) / len(shares) if shares else 1.0


# ---------------------------------------------------------------- the rule


@dataclass(frozen=True)
class QualityRule:
    max_ndcg_drop: float
    max_class_drop: float


def class_drops(live: ModelScore, candidate: ModelScore) -> dict[str, float]:
    """live - candidate nDCG@10 per class both were scored on (positive: the candidate is worse)."""
    return {c: live.classes[c] - candidate.classes[c] for c in live.classes
            if c in candidate.classes}


def refusal(live: ModelScore, candidate: ModelScore, rule: QualityRule) -> str | None:
    """None where the candidate passes; else why not, naming overall and the worst class for
    both models (the class that dropped most is named even when only the overall fails)."""
    drop = live.overall - candidate.overall
    drops = class_drops(live, candidate)
    worst = max(drops, key=lambda c: drops[c]) if drops else None
    # a hair of tolerance: scores are rounded to 4 places, thresholds are given to 2
    overall_fails = drop > rule.max_ndcg_drop + 1e-9
    class_fails = worst is not None and drops[worst] > rule.max_class_drop + 1e-9
    if not (overall_fails or class_fails):
        return None
    text = (f"nDCG@10 on the relevance benchmark: new model {candidate.overall:.3f}, live model "
            f"{live.overall:.3f} (at most {rule.max_ndcg_drop:.2f} lower allowed)")
    if worst is not None:
        text += (f"; worst class {worst}: new {candidate.classes[worst]:.3f}, live "
                 f"{live.classes[worst]:.3f} (a class may drop at most {rule.max_class_drop:.2f})")
    return text + "; use --force to switch"


# ---------------------------------------------------------------- measuring a model

QUERY_CHUNK = 32
"""Queries per encoder run: a live search waits behind at most one chunk."""


class ScoreCache:
    """Model scores by content key, query quantization and benchmark fingerprint, in one small
    JSON file (the newest ``keep`` entries). A file that cannot be read is treated as empty."""

    def __init__(self, path: Path, keep: int = 32) -> None:
        self._path = path
        self._keep = keep

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            document = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def get(self, key: str) -> ModelScore | None:
        entry = self._read().get(key)
        try:
            return ModelScore.from_json(entry) if isinstance(entry, dict) else None
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def put(self, key: str, score: ModelScore) -> None:
        entries = self._read()
        entries.pop(key, None)
        entries[key] = score.to_json()
        write_json_atomically(self._path, dict(list(entries.items())[-self._keep:]))


class ModelQuality:
    """Scores models on the benchmark for the gate; the benchmark is built on first use."""

    def __init__(self, cache: ScoreCache, projects: int) -> None:
        self._cache = cache
        self._projects = projects
        self._bench: Benchmark | None = None

    async def _benchmark(self) -> Benchmark:
        if self._bench is None:
            def build() -> Benchmark:
                bench = benchmark(self._projects)
                _ = bench.fingerprint, bench.allowed  # computed here, off the loop
                return bench
            self._bench = await asyncio.to_thread(build)
        return self._bench

    async def score(self, embedder: Embedder) -> tuple[ModelScore, bool]:
        """(the model's score, whether it came from the cache). Embeds through the embedder's
        own executors (queries in small chunks, so live searches interleave); the ranking and
        scoring run in a thread."""
        bench = await self._benchmark()
        key = f"{embedder.content_key}|queries:{embedder.query_quantization}|{bench.fingerprint}"
        cached = await asyncio.to_thread(self._cache.get, key)
        if cached is not None:
            return cached, True
        documents = await embedder.embed_documents(bench.documents)
        texts = bench.query_texts
        queries = np.vstack([await embedder.embed_queries(texts[i : i + QUERY_CHUNK])
                             for i in range(0, len(texts), QUERY_CHUNK)])
        result = await asyncio.to_thread(score_model, bench, documents, queries)
        try:
            await asyncio.to_thread(self._cache.put, key, result)
        except OSError:
            log.warning("model quality cache not written (%s)", key, exc_info=True)
        return result, False


CACHE_FILE = "model-quality.json"
"""In the data folder: the scores of the models measured there."""


async def compare_models(live: Embedder, candidate: Embedder, *, rule: QualityRule,
                         quality: ModelQuality, figures: dict[str, Any]) -> str | None:
    """Score both models (the cache first), put the numbers into the job's ``figures`` and
    return why the candidate is refused, or None where it passes."""
    started = time.monotonic()
    live_score, live_cached = await quality.score(live)
    new_score, new_cached = await quality.score(candidate)
    figures.update(
        ndcg_at_10={"live": live_score.overall, "new": new_score.overall},
        ndcg_at_10_by_class={c: {"live": live_score.classes.get(c), "new": new_score.classes.get(c)}
                             for c in {**live_score.classes, **new_score.classes}},
        benchmark_queries=new_score.queries,
        quality_s=round(time.monotonic() - started, 2),
        quality_from_cache=[side for side, cached in (("live", live_cached), ("new", new_cached))
                            if cached])
    return refusal(live_score, new_score, rule)
