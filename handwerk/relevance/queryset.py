"""The whole query set in class order, a per-class subset of it, and which queries a corpus
can answer (at least one project of grade >= 2)."""

from __future__ import annotations

from collections.abc import Sequence

from handwerk.relevance.corpus import Corpus
from handwerk.relevance.crosslingual import CROSSLINGUAL
from handwerk.relevance.estimator import ESTIMATOR
from handwerk.relevance.metrics import RELEVANT
from handwerk.relevance.queries import CLASSES, GENERATED, Query, unique

QUERY_SEED = 0


def all_queries(seed: int = QUERY_SEED) -> list[Query]:
    makers = {**GENERATED, **CROSSLINGUAL}
    out: list[Query] = []
    for cls in CLASSES:
        if cls == "estimator":
            out += ESTIMATOR
        else:
            make, count = makers[cls]
            out += unique(cls, seed, count, make)
    return out


def per_class(queries: Sequence[Query], limit: int | None) -> list[Query]:
    """The first ``limit`` queries of each class (all with None)."""
    if limit is None:
        return list(queries)
    taken: dict[str, int] = {}
    out = []
    for q in queries:
        if taken.get(q.cls, 0) < limit:
            taken[q.cls] = taken.get(q.cls, 0) + 1
            out.append(q)
    return out


def answerable(queries: Sequence[Query], corpus: Corpus) -> tuple[list[Query], list[Query]]:
    """(queries with a relevant project in ``corpus``, those without: not scored)."""
    kept: list[Query] = []
    dropped: list[Query] = []
    for q in queries:
        (kept if any(g >= RELEVANT for g in corpus.grades(q.intent)) else dropped).append(q)
    return kept, dropped
