"""``run_eval``: load the corpus into a running service, wait until it is searchable, run every
query through find-similar and score what came back; then price held-out projects through
the estimate endpoint (``estimate``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from handwerk.relevance.corpus import DEFAULT_SEED, DEFAULT_SIZE, build_corpus, grades_of_hits
from handwerk.relevance.metrics import K, relevant_count, score, summarize
from handwerk.relevance.queries import Query
from handwerk.relevance.queryset import all_queries, answerable, per_class
from tooling.relevance.estimate import evaluate_estimates
from tooling.relevance.service import Log, client, load, search_all, wait_searchable

MODES = ("dense", "keyword", "hybrid")


@dataclass(frozen=True)
class EvalConfig:
    url: str = "http://127.0.0.1:8000"
    load: int = DEFAULT_SIZE
    seed: int = DEFAULT_SEED
    mode: str | None = None
    """Sent as the request field ``mode`` only when set (the server must support it)."""
    per_class: int | None = None
    """At most this many queries of each class (the first ones); None: all."""
    api_key: str | None = None
    writers: int = 8
    searchers: int = 4
    index_timeout_s: float = 3600.0
    estimate_holdout: int = 200
    """Held-out projects priced through /api/v1/estimate (``estimate``); 0: no such section."""


def run_eval(config: EvalConfig, log: Log = print,
             queries: list[Query] | None = None) -> dict[str, Any]:
    """The eval as a JSON-ready document (``report.render`` prints it)."""
    if config.mode is not None and config.mode not in MODES:
        raise ValueError(f"mode is one of {', '.join(MODES)}")
    return asyncio.run(_run(config, log, queries))


async def _run(config: EvalConfig, log: Log, queries: list[Query] | None) -> dict[str, Any]:
    corpus = build_corpus(config.load, config.seed)
    asked = per_class(all_queries() if queries is None else queries, config.per_class)
    kept, dropped = answerable(asked, corpus)
    async with client(config.url, config.api_key) as http:
        loaded = await load(http, corpus, log, config.writers)
        waited = await wait_searchable(http, len(corpus), log, config.index_timeout_s)
        stats = (await http.get("/api/v1/similarity/stats")).json()
        log(f"searchable after {waited:.1f} s; model {stats.get('model')}; running {len(kept)} "
            f"queries ({len(dropped)} have no relevant project among {len(corpus)} and are left out)")
        started = time.perf_counter()
        modes: set[str] = set()
        hits = await search_all(http, [q.body(config.mode, K) for q in kept], config.searchers,
                                modes)
        searched = time.perf_counter() - started
        estimates = (await evaluate_estimates(http, corpus, config.estimate_holdout, config.mode,
                                              log) if config.estimate_holdout > 0 else None)
    index = corpus.by_description
    rows, scored = [], []
    for query, found in zip(kept, hits, strict=True):
        judged = corpus.grades(query.intent)
        grades = grades_of_hits(corpus, index, query.intent, found)
        result = score(grades, judged, K)
        assert result is not None  # answerable
        scored.append((query.cls, result))
        rows.append({"class": query.cls, "query": query.text, "filters": dict(query.intent.filters),
                     "rule": _rule(query), "relevant": relevant_count(judged),
                     "grades": grades, **{k: round(v, 4) for k, v in asdict(result).items()}})
    return {
        "service": {"url": config.url, "model": stats.get("model"), "generation": stats.get("generation"),
                    "points": stats.get("points_count"), "mode": config.mode,
                    "answered_by": sorted(modes)},
        "corpus": {"projects": len(corpus), "seed": config.seed, **loaded,
                   "seconds_until_searchable": round(waited, 1)},
        "queries": {"asked": len(asked), "scored": len(kept), "left_out": [q.text for q in dropped],
                    "search_seconds": round(searched, 2), "per_class_limit": config.per_class},
        "metrics": summarize(scored),
        "per_query": rows,
        "estimate": estimates,
    }


def _rule(query: Query) -> dict[str, Any]:
    intent = query.intent
    rule: dict[str, Any] = {"type": intent.kind}
    for name in ("item", "wood", "region", "price"):
        if getattr(intent, name) is not None:
            rule[name] = getattr(intent, name)
    if intent.features:
        rule["features"] = list(intent.features)
    return rule
