"""Weighted quantiles, and how far out an interval's quantiles must sit so that a new price
falls inside it as often as stated (a few neighbours understate their own spread)."""

from __future__ import annotations

from collections.abc import Sequence


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` drawn with ``weights`` (linear between the midpoints
    of the sorted values' weight masses; equal weights give the usual sample quantile)."""
    if not values or len(values) != len(weights):
        raise ValueError("values and weights: same length, at least one")
    pairs = sorted(zip(values, weights, strict=True))
    total = sum(w for _, w in pairs)
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    q = min(1.0, max(0.0, q))
    # the i-th value sits at the middle of its own mass
    positions, seen = [], 0.0
    for _, w in pairs:
        positions.append((seen + w / 2) / total)
        seen += w
    if q <= positions[0]:
        return pairs[0][0]
    if q >= positions[-1]:
        return pairs[-1][0]
    for i in range(1, len(pairs)):
        if q <= positions[i]:
            lo, hi = positions[i - 1], positions[i]
            t = 0.0 if hi == lo else (q - lo) / (hi - lo)
            return pairs[i - 1][0] + t * (pairs[i][0] - pairs[i - 1][0])
    return pairs[-1][0]


def effective_count(weights: Sequence[float]) -> float:
    """Kish's effective sample size: n for equal weights, less when a few weigh most."""
    total, squares = sum(weights), sum(w * w for w in weights)
    return 0.0 if squares <= 0 else total * total / squares


def interval_levels(coverage: float, n_eff: float) -> tuple[float, float]:
    """The quantile levels of a central interval meant to hold ``coverage`` of new values,
    judged from ``n_eff`` exchangeable ones. The span from the k-th smallest to the k-th
    largest of n values holds a new one with chance (n + 1 - 2k) / (n + 1) (the
    split-conformal rank argument), so k = (n + 1)(1 - coverage) / 2, and the k-th value sits
    at level (k - 1/2) / n in ``weighted_quantile``: a little further out than the naive
    (1 - coverage) / 2."""
    if not 0 < coverage < 1:
        raise ValueError("coverage is a share between 0 and 1")
    if n_eff <= 0:
        return 0.0, 1.0
    tail = max(0.0, ((n_eff + 1) * (1 - coverage) / 2 - 0.5) / n_eff)
    return tail, 1 - tail
