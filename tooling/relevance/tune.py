"""Choose hybrid search's fusion on the benchmark: run every query in every mode and fusion
variant against a data folder a ``handwerk eval`` loaded (serve stopped), in process, through
the same adapter and the same query embedding the service uses, and print nDCG@10 per class.

    python -m tooling.relevance.tune --data-dir DIR [--model e5] [--json out.json]
        [--latency-fusion "rrf,60,1,1,50"]

``--latency-fusion``: afterwards, the latency of one query at a time (embed + search, no
query cache, no HTTP) in dense, keyword and hybrid mode with that fusion, on 1 and 2 query
threads: p50 and p99 in ms, and the process's peak RSS.

Why in process: a fusion setting is read at serve start, so trying twenty of them over HTTP
would take twenty restarts; the ranking is the adapter's either way (``VectorIndex.search``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from handwerk.embedding.loading import load_embedder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.keywords import Fusion
from handwerk.index.protocol import SearchFilters, VectorIndex
from handwerk.relevance.corpus import DEFAULT_SEED, Corpus, build_corpus, grades_of_hits
from handwerk.relevance.metrics import K, score, summarize
from handwerk.relevance.queries import Query
from handwerk.relevance.queryset import all_queries, answerable
from handwerk.settings import Settings

VARIANTS: list[tuple[str, Fusion | None]] = [
    ("dense", None), ("keyword", None),
    *[(f"rrf k={k} w={dw:g}:{kw:g} p={p}", Fusion("rrf", k, dw, kw, p))
      for k in (2, 10, 60) for dw, kw in ((1, 1), (2, 1), (3, 1)) for p in (50,)],
    ("rrf k=60 w=5:1 p=50", Fusion("rrf", 60, 5.0, 1.0, 50)),
    ("rrf k=10 w=2:1 p=20", Fusion("rrf", 10, 2.0, 1.0, 20)),
    ("rrf k=10 w=2:1 p=100", Fusion("rrf", 10, 2.0, 1.0, 100)),
    ("dbsf p=20", Fusion("dbsf", prefetch=20)),
    ("dbsf p=50", Fusion("dbsf", prefetch=50)),
    ("dbsf p=100", Fusion("dbsf", prefetch=100)),
]


def _filters(raw: dict[str, Any]) -> SearchFilters:
    return SearchFilters(project_type=raw.get("project_type"), region=raw.get("region"),
                         min_price=raw.get("min_price"), max_price=raw.get("max_price"))


async def score_variant(index: VectorIndex, corpus: Corpus, queries: Sequence[Query],
                        vectors: Sequence[list[float]], name: str,
                        fusion: Fusion | None) -> dict[str, float]:
    """nDCG@10 per class (and overall) of one variant: ``name`` "dense" or "keyword" searches
    by that side alone, any other name is hybrid with ``fusion``."""
    scored = []
    for query, vector in zip(queries, vectors, strict=True):
        hits = await index.search(
            None if name == "keyword" else vector, top_k=K, threshold=0.0,
            filters=_filters(dict(query.intent.filters)),
            text=None if name == "dense" else query.text, fusion=fusion)
        found = grades_of_hits(corpus, corpus.by_description, query.intent,
                               [h.payload for h in hits])
        result = score(found, corpus.grades(query.intent), K)
        assert result is not None
        scored.append((query.cls, result))
    return {cls: round(float(row["ndcg@10"]), 3) for cls, row in summarize(scored).items()}


async def _tune(data_dir: Path, model: str | None, size: int) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    embedder = load_embedder(settings, model)
    corpus = build_corpus(size, DEFAULT_SEED)
    queries, _ = answerable(all_queries(), corpus)
    vectors = [v.tolist() for v in await embedder.embed_queries([q.text for q in queries])]
    index = EdgeVectorIndex(settings.index_dir, settings.index.alias,
                            model=embedder.model_name, dimension=embedder.dimension)
    await index.open()
    table: dict[str, Any] = {}
    try:
        for name, fusion in VARIANTS:
            table[name] = {"fusion": asdict(fusion) if fusion else None,
                           "ndcg_at_10": await score_variant(index, corpus, queries, vectors,
                                                             name, fusion)}
            print(name, table[name]["ndcg_at_10"], flush=True)
    finally:
        await index.close()
    return {"model": embedder.model_name, "queries": len(queries), "projects": size,
            "variants": table}


async def _latency(data_dir: Path, model: str | None, fusion: Fusion) -> dict[str, Any]:
    queries = [q.text for q in all_queries()]
    out: dict[str, Any] = {}
    for threads in (1, 2):
        settings = Settings(data_dir=data_dir, query_threads=threads)
        embedder = load_embedder(settings, model)
        index = EdgeVectorIndex(settings.index_dir, settings.index.alias,
                                model=embedder.model_name, dimension=embedder.dimension)
        await index.open()
        try:
            await embedder.embed_queries(queries[:8])  # warm up
            for mode in ("dense", "keyword", "hybrid"):
                times = []
                for text in queries:
                    started = time.perf_counter()
                    vector = None if mode == "keyword" else \
                        (await embedder.embed_queries([text]))[0].tolist()
                    await index.search(vector, top_k=K, threshold=0.0, filters=SearchFilters(),
                                       text=None if mode == "dense" else text, fusion=fusion)
                    times.append((time.perf_counter() - started) * 1000)
                cuts = statistics.quantiles(times, n=100)
                out[f"{mode} {threads} thread(s)"] = {"p50_ms": round(cuts[49], 2),
                                                      "p99_ms": round(cuts[98], 2)}
                print(mode, threads, out[f"{mode} {threads} thread(s)"], flush=True)
        finally:
            await index.close()
            embedder.close()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--latency-fusion", default=None,
                        help="method,k,dense weight,keyword weight,prefetch")
    parser.add_argument("--skip-variants", action="store_true")
    args = parser.parse_args()
    document: dict[str, Any] = {}
    if not args.skip_variants:
        document = asyncio.run(_tune(args.data_dir, args.model, args.projects))
    if args.latency_fusion:
        method, k, dw, kw, prefetch = args.latency_fusion.split(",")
        fusion = Fusion(method, int(k), float(dw), float(kw), int(prefetch))  # type: ignore[arg-type]
        document["latency"] = asyncio.run(_latency(args.data_dir, args.model, fusion))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
