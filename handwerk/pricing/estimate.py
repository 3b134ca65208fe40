"""Estimate a new job's price from comparable projects (the neighbours a search found).

Every method works on price per m² (a project's price over its area), weights the neighbours
(``WEIGHTINGS``: alike, or by search similarity), takes the weighted median as the job's price
per m² and multiplies by its area; the interval is the weighted spread of the same values, its
quantile levels widened for the few values it rests on (``quantiles.interval_levels``).
The methods differ in what they adjust before that:

- ``weighted_median``: nothing;
- ``complexity``: each neighbour's price per m² is moved to the job's complexity with a factor
  per complexity level fitted on the neighbours themselves (weighted least squares of log
  price per m² on complexity, shrunk toward no effect by its own standard error, so a slope the
  neighbours cannot support is not applied);
- ``complexity_wood``: that, then a factor per wood (the neighbours' mean log residual of that
  wood, shrunk toward 1 by ``WOOD_PRIOR`` pseudo-neighbours).

Which one the service uses (``DEFAULT_METHOD``, ``DEFAULT_WEIGHTING``) was chosen by
``handwerk eval`` on held-out projects (README, "Price estimates"): on the demo corpus,
whose prices depend on type, area and complexity but not on the words, weighting by
similarity gained nothing over equal weights (the neighbours are already the most similar
ones), and the wood adjustment only added noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from handwerk.pricing.quantiles import effective_count, interval_levels, weighted_quantile

METHODS = ("weighted_median", "complexity", "complexity_wood", "complexity_relative")
DEFAULT_METHOD = "complexity"
WEIGHTINGS = ("equal", "similarity")
"""How the neighbours weigh: each alike, or by search similarity."""
DEFAULT_WEIGHTING = "equal"
WOOD_PRIOR = 5.0
"""Pseudo-neighbours of factor 1 each wood's factor is averaged with (shrinkage)."""
MIN_WEIGHT = 1e-3
"""A neighbour with similarity 0 still counts a little (it passed the type filter)."""


@dataclass(frozen=True)
class Comparable:
    """A neighbour: a past project of the same type, with its search similarity."""

    price: float
    area: float
    complexity: int
    wood: str
    similarity: float
    key: str = ""
    """The caller's name for it (a project id)."""

    @property
    def price_per_sqm(self) -> float:
        return self.price / self.area


@dataclass(frozen=True)
class Target:
    """The job to price: its area; complexity and wood when known (None: not adjusted for)."""

    area: float
    complexity: int | None = None
    wood: str | None = None


@dataclass(frozen=True)
class Adjustment:
    """What a neighbour's price per m² was multiplied by, and why."""

    factor: float
    complexity: float = 1.0
    wood: float = 1.0


@dataclass(frozen=True)
class Estimate:
    price: float
    low: float
    high: float
    coverage: float
    price_per_sqm: float
    method: str
    used: tuple[Comparable, ...]
    """The usable comparables (``usable``), in the order given."""
    weights: tuple[float, ...]
    """Each used neighbour's share (sums to 1)."""
    adjustments: tuple[Adjustment, ...]
    complexity_step: float
    """The factor per complexity level applied (1.0: none)."""


class TooFewComparables(ValueError):
    """Fewer comparable projects than the estimate needs: no number is made up."""

    def __init__(self, found: int, needed: int, what: str) -> None:
        super().__init__(f"only {found} comparable projects ({what}) were found, at least "
                         f"{needed} are needed for an estimate")
        self.found, self.needed = found, needed


def usable(comparables: Sequence[Comparable]) -> list[Comparable]:
    """Those with a price and an area (a price per m² exists)."""
    return [c for c in comparables if c.area > 0 and c.price > 0
            and math.isfinite(c.price / c.area)]


def complexity_slope(comparables: Sequence[Comparable], weights: Sequence[float]) -> float:
    """Log price per m² gained per complexity level: the weighted least-squares slope, shrunk
    by b² / (b² + se²) (0 when the neighbours' complexities do not vary)."""
    total = sum(weights)
    xs = [float(c.complexity) for c in comparables]
    ys = [math.log(c.price_per_sqm) for c in comparables]
    mx = sum(w * x for w, x in zip(weights, xs, strict=True)) / total
    my = sum(w * y for w, y in zip(weights, ys, strict=True)) / total
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(weights, xs, strict=True))
    if sxx <= 1e-12 or len(comparables) < 3:
        return 0.0
    slope = sum(w * (x - mx) * (y - my) for w, x, y in zip(weights, xs, ys, strict=True)) / sxx
    residual = sum(w * (y - my - slope * (x - mx)) ** 2
                   for w, x, y in zip(weights, xs, ys, strict=True)) / total
    n_eff = effective_count(weights)
    se2 = residual / max(n_eff - 2, 1.0) / (sxx / total)
    return slope * slope * slope / (slope * slope + se2) if slope else 0.0


def _wood_factors(comparables: Sequence[Comparable], weights: Sequence[float],
                  adjusted: Sequence[float], centre: float) -> dict[str, float]:
    """Per wood: exp of the weighted mean log residual, shrunk toward 0 by ``WOOD_PRIOR``."""
    sums: dict[str, tuple[float, float]] = {}
    total = sum(weights)
    for c, w, v in zip(comparables, weights, adjusted, strict=True):
        share = w / total * len(comparables)  # in neighbours
        s, n = sums.get(c.wood.casefold(), (0.0, 0.0))
        sums[c.wood.casefold()] = (s + share * math.log(v / centre), n + share)
    return {wood: math.exp(s / (n + WOOD_PRIOR)) for wood, (s, n) in sums.items()}


def _prediction_widening(found: Sequence[Comparable], weights: Sequence[float],
                         complexity: int | None, n_eff: float) -> float:
    """How much wider (in log price) the interval must be than the neighbours' own spread: a
    new price also carries the error of the centre the neighbours give, and of the slope it
    was moved along (the regression prediction interval's sqrt(1 + 1/n + (x - x̄)² / Sxx))."""
    extra = 1 / max(n_eff, 1.0)
    if complexity is not None:
        mean = sum(w * c.complexity for w, c in zip(weights, found, strict=True))
        spread = sum(w * (c.complexity - mean) ** 2 for w, c in zip(weights, found, strict=True))
        if spread > 0:
            extra += (complexity - mean) ** 2 / (spread * max(n_eff, 1.0))
    return math.sqrt(1 + extra)


def estimate(target: Target, comparables: Sequence[Comparable], *, method: str = DEFAULT_METHOD,
             weighting: str = DEFAULT_WEIGHTING, coverage: float = 0.8, min_count: int = 5,
             what: str = "") -> Estimate:
    """The estimate from ``comparables`` (at least ``min_count`` usable ones, else
    ``TooFewComparables``); ``what`` says in its message what they were filtered by."""
    if method not in METHODS:
        raise ValueError(f"method is one of {', '.join(METHODS)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting is one of {', '.join(WEIGHTINGS)}")
    if target.area <= 0:
        raise ValueError("the area must be positive")
    found = usable(comparables)
    if len(found) < max(1, min_count):
        raise TooFewComparables(len(found), max(1, min_count), what or "with a price and an area")
    raw = [max(c.similarity, MIN_WEIGHT) if weighting == "similarity" else 1.0 for c in found]
    total = sum(raw)
    weights = [w / total for w in raw]
    step = 0.0
    if method != "weighted_median" and target.complexity is not None:
        step = complexity_slope(found, weights)
    c_factors = [math.exp(step * (target.complexity - c.complexity)) if step else 1.0
                 for c in found] if target.complexity is not None else [1.0] * len(found)
    values = [c.price_per_sqm * f for c, f in zip(found, c_factors, strict=True)]
    w_factors = [1.0] * len(found)
    if method == "complexity_wood" and target.wood:
        centre = weighted_quantile(values, weights, 0.5)
        woods = _wood_factors(found, weights, values, centre)
        own = woods.get(target.wood.casefold(), 1.0)
        w_factors = [own / woods[c.wood.casefold()] for c in found]
        values = [v * f for v, f in zip(values, w_factors, strict=True)]
    if method == "complexity_relative":
        per_sqm = weighted_quantile(values, [w / v for w, v in zip(weights, values, strict=True)], 0.5)
    else:
        per_sqm = weighted_quantile(values, weights, 0.5)
    n_eff = effective_count(weights)
    lo_level, hi_level = interval_levels(coverage, n_eff)
    widen = _prediction_widening(found, weights, target.complexity if step else None, n_eff)
    low = per_sqm * (weighted_quantile(values, weights, lo_level) / per_sqm) ** widen
    high = per_sqm * (weighted_quantile(values, weights, hi_level) / per_sqm) ** widen
    return Estimate(
        price=per_sqm * target.area, low=low * target.area, high=high * target.area,
        coverage=coverage, price_per_sqm=per_sqm, method=f"{method}/{weighting}",
        used=tuple(found),
        weights=tuple(weights),
        adjustments=tuple(Adjustment(cf * wf, cf, wf)
                          for cf, wf in zip(c_factors, w_factors, strict=True)),
        complexity_step=math.exp(step))
