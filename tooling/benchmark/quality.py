"""Search quality: recall@10 of the service against the old design's exact search, whose
latency is the baseline."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tooling.benchmark.client import Client
from tooling.benchmark.stats import brute_force_top_k, percentile, recall_at_k


async def compare_with_exact(client: Client, embedder: Any, matrix: np.ndarray, ids: list[str] | None,
                   queries: list[str]) -> dict[str, Any]:
    """Service (dense mode: what the exact search computes) vs the old design's exact search on
    the same queries (one at a time)."""
    service, baseline, search_only, recalls = [], [], [], []
    _, response = await client.request("GET", "/api/v1/similarity/stats")
    stats = response.json()
    for query in queries:
        ms, found = await client.find(query, top_k=10, threshold=0.0, mode="dense")
        service.append(ms)
        started = time.perf_counter()
        vector = embedder.encode([query], "query")[0]
        embedded = time.perf_counter()
        top = brute_force_top_k(matrix, vector, 10)
        finished = time.perf_counter()
        baseline.append((finished - started) * 1000)
        search_only.append((finished - embedded) * 1000)
        if ids is not None:
            recalls.append(recall_at_k(found, [ids[i] for i in top], 10))
    service_p50, baseline_p50 = percentile(service, 50), percentile(baseline, 50)
    points, indexed = int(stats["points_count"]), int(stats["indexed_vectors_count"])
    return {"queries": len(queries), "vectors": int(matrix.shape[0]),
            "index_points": points, "index_hnsw_points": indexed,
            "hnsw_share": round(indexed / points, 3) if points else None,
            "recall_at_10": round(float(np.mean(recalls)), 4) if recalls else None,
            "recall_min": round(min(recalls), 4) if recalls else None,
            "service_p50_ms": round(service_p50, 2),
            "service_p99_ms": round(percentile(service, 99), 2),
            "baseline_p50_ms": round(baseline_p50, 2),
            "baseline_p99_ms": round(percentile(baseline, 99), 2),
            "baseline_search_p50_ms": round(percentile(search_only, 50), 3),
            "speedup": round(baseline_p50 / service_p50, 2) if service_p50 > 0 else None}
