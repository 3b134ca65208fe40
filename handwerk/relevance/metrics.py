"""Ranking metrics over graded relevance, per query and averaged.

For one query, ``found`` is the grade of each returned hit in rank order (at most ``k``
counted) and ``judged`` the grade of every corpus project (``judge.grade``; 0: not relevant).

- **nDCG@k** (graded, exponential gain): DCG@k = sum over ranks i = 1..k of
  (2^grade_i - 1) / log2(i + 1); nDCG@k = DCG@k of ``found`` / DCG@k of the ideal ranking
  (``judged`` sorted by grade, best first). Undefined (None) when no project has a grade > 0.
- **recall@k**: the relevant projects are those of grade >= 2 (the type and at least one named
  aspect); recall@k = |relevant among the first k hits| / min(k, |relevant|), so 1.0 means the
  top k holds as many relevant projects as it could. Undefined (None) when none is relevant.
- **MRR** (@k): 1 / the rank of the first hit of grade >= 2 within the first k; 0 when there is
  none. Its mean over queries is the mean reciprocal rank.

A query with no relevant project (grade >= 2) in the corpus is not scored at all (the eval
leaves it out and counts it), so every mean is over the same queries. Means per class are over
that class's queries; ``overall`` is the mean over all queries (each query weighs the same).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

K = 10
RELEVANT = 2
"""The lowest grade recall and MRR count as relevant."""


def dcg(grades: Iterable[int], k: int = K) -> float:
    return sum((2.0 ** g - 1) / math.log2(rank + 1)
               for rank, g in enumerate(list(grades)[:k], start=1))


def ndcg(found: Sequence[int], judged: Iterable[int], k: int = K) -> float | None:
    ideal = dcg(sorted(judged, reverse=True)[:k], k)
    if ideal == 0:
        return None
    return dcg(found, k) / ideal


def relevant_count(judged: Iterable[int], minimum: int = RELEVANT) -> int:
    return sum(g >= minimum for g in judged)


def recall(found: Sequence[int], relevant: int, k: int = K, minimum: int = RELEVANT) -> float | None:
    """``relevant``: how many corpus projects are relevant (``relevant_count``)."""
    if relevant == 0:
        return None
    return sum(g >= minimum for g in found[:k]) / min(k, relevant)


def reciprocal_rank(found: Sequence[int], k: int = K, minimum: int = RELEVANT) -> float:
    for rank, g in enumerate(found[:k], start=1):
        if g >= minimum:
            return 1 / rank
    return 0.0


@dataclass(frozen=True)
class Scores:
    ndcg: float
    recall: float
    mrr: float


def score(found: Sequence[int], judged: Sequence[int], k: int = K) -> Scores | None:
    """All three for one query, or None when it has no relevant project to find."""
    relevant = relevant_count(judged)
    value = ndcg(found, judged, k)
    if relevant == 0 or value is None:
        return None
    found_recall = recall(found, relevant, k)
    assert found_recall is not None  # relevant > 0
    return Scores(value, found_recall, reciprocal_rank(found, k))


def summarize(scored: Iterable[tuple[str, Scores]]) -> dict[str, dict[str, float | int]]:
    """Means per class and ``overall`` (over all queries), each with its query count."""
    by_class: dict[str, list[Scores]] = {}
    everything: list[Scores] = []
    for name, s in scored:
        by_class.setdefault(name, []).append(s)
        everything.append(s)
    table = {name: _means(rows) for name, rows in by_class.items()}
    if everything:
        table["overall"] = _means(everything)
    return table


def _means(rows: Sequence[Scores]) -> dict[str, float | int]:
    n = len(rows)
    return {"queries": n, "ndcg@10": round(sum(r.ndcg for r in rows) / n, 4),
            "recall@10": round(sum(r.recall for r in rows) / n, 4),
            "mrr": round(sum(r.mrr for r in rows) / n, 4)}


def ordered(table: Mapping[str, object], classes: Sequence[str]) -> list[str]:
    """The table's class names in the given order, then any others, ``overall`` last."""
    names = [c for c in classes if c in table] + sorted(
        c for c in table if c not in classes and c != "overall")
    return names + (["overall"] if "overall" in table else [])
