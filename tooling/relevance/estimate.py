"""The eval's price-estimate section: held-out projects priced through ``POST /api/v1/estimate``.

Held out: the ``holdout`` demo projects that follow the loaded corpus in the same seed's
sequence (``demo_projects(load + holdout)[load:]``): drawn exactly like the loaded ones, never
loaded, so the service has never seen them. Each is sent without its price, one request at a
time (so the latency is that of one request alone).

Scored against its real price: the service's estimate; every method and weighting of
``handwerk.pricing.estimate`` recomputed here from the neighbours the service returned (the
same neighbours, so only the arithmetic differs; the service's own method must agree with
its answer); and the two baselines over the loaded corpus (``handwerk.pricing.baselines``).
Per method: MAPE, median absolute percentage error and the interval's coverage; the
latency's p50/p99 (over HTTP, and the service's own ``estimate_time_ms``); per project, the
answer and its neighbours as [similarity, price, area, complexity, wood].
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from handwerk.pricing.baselines import Baselines
from handwerk.pricing.estimate import (
    METHODS,
    WEIGHTINGS,
    Comparable,
    Target,
    TooFewComparables,
    estimate,
)
from handwerk.relevance.corpus import Corpus
from handwerk.relevance.demo import demo_projects
from tooling.relevance.service import EvalError, Log, call

FIELDS = ("name", "description", "project_type", "total_area_sqm", "region", "wood_type",
          "complexity")


def held_out(corpus: Corpus, holdout: int) -> list[dict[str, Any]]:
    """The ``holdout`` projects after the corpus in its seed's sequence (never loaded)."""
    return demo_projects(len(corpus) + holdout, corpus.seed)[len(corpus):]


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _errors(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """MAPE and median APE of (estimate, real) pairs."""
    ape = [abs(e - y) / y for e, y in pairs]
    return {"mape": round(statistics.mean(ape), 4), "median_ape": round(statistics.median(ape), 4)}


def _recomputed(answer: dict[str, Any], project: dict[str, Any], variant: str,
                coverage: float) -> tuple[float, float, float]:
    method, weighting = variant.split("/")
    comparables = [Comparable(n["final_price"], n["total_area_sqm"], n["complexity"],
                              n["wood_type"], n["similarity"], n["id"])
                   for n in answer["neighbours"]]
    result = estimate(Target(project["total_area_sqm"], project["complexity"],
                             project["wood_type"]), comparables, method=method,
                      weighting=weighting, coverage=coverage, min_count=1)
    return result.price, result.low, result.high


async def evaluate_estimates(http: httpx.AsyncClient, corpus: Corpus, holdout: int,
                             mode: str | None, log: Log) -> dict[str, Any]:
    """The section as a JSON-ready dict."""
    projects = held_out(corpus, holdout)
    log(f"estimates: pricing {len(projects)} held-out projects (not loaded) one at a time")
    answers: list[dict[str, Any] | None] = []
    wall_ms: list[float] = []
    for project in projects:
        body: dict[str, Any] = {name: project[name] for name in FIELDS}
        if mode is not None:
            body["mode"] = mode
        started = time.perf_counter()
        try:
            answers.append(await call(http, "POST", "/api/v1/estimate", json=body))
        except EvalError as e:
            if " 422 " not in str(e) or "too_few_comparables" not in str(e):
                raise
            answers.append(None)
        wall_ms.append((time.perf_counter() - started) * 1000)
    answered = [(p, a) for p, a in zip(projects, answers, strict=True) if a is not None]
    if not answered:
        raise EvalError("every estimate was refused (too few comparable projects): load more")
    coverage = answered[0][1]["interval"]["coverage"]
    served = answered[0][1]["method"]
    baselines = Baselines(corpus.projects)
    methods: dict[str, Any] = {}
    for method in (f"{m}/{w}" for m in METHODS for w in WEIGHTINGS):
        pairs, inside = [], 0
        for project, answer in answered:
            if method == served:
                price = answer["estimated_price"]
                low, high = answer["interval"]["low"], answer["interval"]["high"]
                again, _, _ = _recomputed(answer, project, method, coverage)
                if abs(again - price) > max(0.01 * price, 1.0):
                    raise EvalError(f"the service's estimate {price} differs from its method "
                                    f"{method!r} on its own neighbours ({again:.2f})")
            else:
                try:
                    price, low, high = _recomputed(answer, project, method, coverage)
                except TooFewComparables:
                    continue
            real = project["final_price"]
            pairs.append((price, real))
            inside += low <= real <= high
        methods[method] = {**_errors(pairs), "coverage": round(inside / len(pairs), 4),
                           "served": method == served}
    by_type = [(baselines.type_median(p["project_type"], p["total_area_sqm"]), p["final_price"])
               for p, _ in answered]
    by_wood = [(baselines.type_wood_median(p["project_type"], p["wood_type"], p["total_area_sqm"]),
                p["final_price"]) for p, _ in answered]
    if any(e is None for e, _ in by_type + by_wood):
        raise EvalError("a held-out project's type is not in the loaded corpus: load more")
    base = {"type_median": _errors([(float(e or 0), y) for e, y in by_type]),
            "type_wood_median": _errors([(float(e or 0), y) for e, y in by_wood])}
    own = methods[served]
    server_ms = [a["estimate_time_ms"] for _, a in answered]
    rows = [{"name": p["name"], "project_type": p["project_type"], "wood_type": p["wood_type"],
             "complexity": p["complexity"], "total_area_sqm": p["total_area_sqm"],
             "final_price": p["final_price"],
             **({"estimated_price": a["estimated_price"], "interval": a["interval"],
                 "weak": a["weak"],
                 "neighbours": [[n["similarity"], n["final_price"], n["total_area_sqm"],
                                 n["complexity"], n["wood_type"]] for n in a["neighbours"]]}
                if a is not None else {"refused": True})}
            for p, a in zip(projects, answers, strict=True)]
    return {
        "held_out": len(projects), "answered": len(answered),
        "refused": len(projects) - len(answered), "method": served, "coverage_stated": coverage,
        "weak": sum(bool(a["weak"]) for _, a in answered),
        "neighbours_mean": round(statistics.mean(len(a["neighbours"]) for _, a in answered), 1),
        "similarity_median": round(statistics.median(
            statistics.median(n["similarity"] for n in a["neighbours"]) for _, a in answered), 4),
        "methods": methods, "baselines": base,
        "beats_baselines": all(own[k] < b[k] for b in base.values()
                               for k in ("mape", "median_ape")),
        "latency_ms": {"p50": round(_percentile(wall_ms, 50), 2),
                       "p99": round(_percentile(wall_ms, 99), 2),
                       "server_p50": round(_percentile(server_ms, 50), 2),
                       "server_p99": round(_percentile(server_ms, 99), 2)},
        "per_project": rows,
    }
