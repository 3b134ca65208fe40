"""find-similar and batch-similar with one client, and find-similar throughput with many."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from handwerk.relevance.demo import KINDS
from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig
from tooling.benchmark.queries import QueryGenerator
from tooling.benchmark.stats import latency_summary
from tooling.benchmark.timings import stage_medians


async def one_client(client: Client, queries: QueryGenerator, config: BenchConfig) -> dict[str, Any]:
    """find-similar (after a warm-up, with the ``Server-Timing`` stages) and batch-similar of 5,
    one request at a time."""
    for _ in range(10):  # warm-up
        await client.find(next(queries))
    client.timings.clear()
    singles = [(await client.find(next(queries), timing=True))[0]
               for _ in range(config.single_searches)]
    reported = [t for t in client.timings if t]
    batches = []
    for _ in range(config.batches):
        ms, _ = await client.request("POST", "/api/v1/similarity/batch-similar",
                                     json={"queries": queries.take(5), "top_k": 10})
        batches.append(ms)
    return {"single": latency_summary(singles), "batch5": latency_summary(batches),
            "estimate": latency_summary(await estimates(client, queries, config)),
            "stages": stage_medians(reported) | {"responses_with_header": len(reported)}}


async def estimates(client: Client, queries: QueryGenerator, config: BenchConfig) -> list[float]:
    """POST /api/v1/estimate, one at a time: a benchmark query as the description, each project
    type in turn, areas and complexities varied."""
    kinds = sorted(KINDS)
    latencies = []
    for i in range(config.estimates):
        ms, _ = await client.request("POST", "/api/v1/estimate", json={
            "description": next(queries), "project_type": kinds[i % len(kinds)],
            "total_area_sqm": 8.0 + (i * 7) % 40, "complexity": 1 + i % 5})
        latencies.append(ms)
    return latencies


async def throughput(client: Client, queries: QueryGenerator, config: BenchConfig) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + config.throughput_seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                latencies.append((await client.find(next(queries)))[0])
            except httpx.HTTPStatusError as e:
                key = str(e.response.status_code)
                errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(config.throughput_clients)))
    elapsed = time.perf_counter() - started
    return {"throughput": latency_summary(latencies) | {
        "clients": config.throughput_clients, "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1), "errors": errors}}
