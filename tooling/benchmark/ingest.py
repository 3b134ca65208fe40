"""Ingest through the REST API until every project is searchable (measured without searches and
under a light search load, then bulk); then the wait until compaction has the points in the
HNSW graph."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig, BenchError
from tooling.benchmark.queries import QueryGenerator
from tooling.benchmark.stats import latency_summary, ratio


async def _write_all(client: Client, projects: Sequence[dict[str, Any]],
                     concurrency: int) -> list[str]:
    """POST every project with ``concurrency`` writers; their ids, in order."""
    ids: list[str | None] = [None] * len(projects)
    order = iter(range(len(projects)))

    async def writer() -> None:
        for i in order:
            _, response = await client.request("POST", "/api/v1/projects/", json=projects[i])
            ids[i] = response.json()["id"]

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return [str(i) for i in ids]


async def _until_points(client: Client, points: int, started: float, timeout_s: float) -> None:
    while await client.points() < points:
        if time.perf_counter() - started > timeout_s:
            raise BenchError(f"the index did not reach {points} points within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def light_search_load(client: Client, queries: QueryGenerator, rate: float,
                            done: asyncio.Event, latencies: list[float]) -> None:
    """find-similar at ``rate`` per second, open loop (each on its schedule, whether or not the
    one before answered, as independent users would), until ``done``; latencies appended."""
    interval = 1 / rate
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        latencies.append((await client.find(next(queries)))[0])

    due = time.perf_counter()
    while not done.is_set():
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        due += interval
        try:
            await asyncio.wait_for(done.wait(), max(0.0, due - time.perf_counter()))
        except TimeoutError:
            pass
    await asyncio.gather(*pending)


async def _measured(client: Client, projects: Sequence[dict[str, Any]], queries: QueryGenerator,
                    config: BenchConfig, raw_rate: float | None, *, load: bool,
                    ) -> tuple[dict[str, Any], list[float], list[str]]:
    """Write ``projects`` until all are searchable, with the light search load or without."""
    done = asyncio.Event()
    during: list[float] = []
    base = await client.points()
    searches = asyncio.create_task(light_search_load(
        client, queries, config.search_load_rate, done, during)) if load else None
    started = time.perf_counter()
    try:
        ids = await _write_all(client, projects, config.concurrency)
        written = time.perf_counter() - started
        await _until_points(client, base + len(projects), started, config.ingest_timeout_s)
        total = time.perf_counter() - started
    finally:
        done.set()
        if searches is not None:
            await searches
    rate = len(projects) / total
    return {"projects": len(projects), "api_write_rate_per_s": round(len(projects) / written, 1),
            "seconds_until_all_searchable": round(total, 2), "pipeline_rate_per_s": round(rate, 1),
            "raw_embed_rate_per_s": None if raw_rate is None else round(raw_rate, 1),
            "pipeline_vs_raw": ratio(rate, raw_rate),
            "search_load_per_s": config.search_load_rate if load else 0}, during, ids


async def ingest_all(client: Client, projects: list[dict[str, Any]], queries: QueryGenerator,
                  config: BenchConfig, raw_rate: float | None) -> tuple[dict[str, Any], list[str]]:
    """The measured part, embedded by the pipeline: its first half with no search, its second
    half under the light search load (``search_load_rate``, open loop), each against
    ``raw_rate`` (the raw embedder on every core); then the bulk part (vectors reused)."""
    measured, bulk = projects[:config.measured_ingest], projects[config.measured_ingest:]
    half = len(measured) // 2
    base = await client.points()
    part: dict[str, Any] = {}
    ids: list[str] = []
    if half:
        part["ingest_quiet"], _, ids = await _measured(client, measured[:half], queries, config,
                                                       raw_rate, load=False)
    part["ingest"], during, loaded = await _measured(client, measured[half:], queries, config,
                                                     raw_rate, load=True)
    ids += loaded
    part["during_ingest"] = latency_summary(during)
    if bulk:
        started = time.perf_counter()
        ids += await _write_all(client, bulk, config.concurrency)
        written = time.perf_counter() - started
        await _until_points(client, base + len(projects), started, config.ingest_timeout_s)
        total = time.perf_counter() - started
        part["bulk_load"] = {"projects": len(bulk), "seconds": round(total, 1),
                             "api_write_rate_per_s": round(len(bulk) / written, 1),
                             "rate_per_s": round(len(bulk) / total, 1),
                             "note": "vectors reused from the preloaded vector cache"}
    return part, ids


async def until_in_graph(client: Client, unindexed_allowed: int,
                          timeout_s: float) -> dict[str, Any]:
    """Wait (bounded) until at most ``unindexed_allowed`` points are outside the HNSW graph:
    the state the service's own compaction keeps a serving index in."""
    started = time.perf_counter()
    while True:
        _, response = await client.request("GET", "/api/v1/similarity/stats")
        stats = response.json()
        points, indexed = int(stats["points_count"]), int(stats["indexed_vectors_count"])
        if points - indexed <= unindexed_allowed or time.perf_counter() - started > timeout_s:
            return {"seconds": round(time.perf_counter() - started, 1), "points": points,
                    "in_graph": indexed, "reached": points - indexed <= unindexed_allowed}
        await asyncio.sleep(1.0)
