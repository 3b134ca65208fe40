"""Latency percentiles and search quality: the pure arithmetic of the bench (unit-tested)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default), so p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b to three decimals; None where either is missing or b is 0."""
    return None if a is None or not b else round(a / b, 3)


def latency_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p99, max in ms (rounded to 0.01); None for each figure when there are none."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 2),
            "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values), 2)}


def recall_at_k(found: Sequence[str], exact: Sequence[str], k: int = 10) -> float:
    """Share of the exact top-k that the search found in its own top-k. With fewer than k
    projects in the index, the exact list is shorter and the share is of that."""
    if k < 1:
        raise ValueError("k must be at least 1")
    truth = list(exact)[:k]
    if not truth:
        return 1.0
    return len(set(found[:k]) & set(truth)) / len(truth)


def brute_force_top_k(matrix: np.ndarray, vector: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k largest dot products (cosine for L2-normalised rows), best first:
    the old design's in-memory search."""
    scores = matrix @ vector
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]
