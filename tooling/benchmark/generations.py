"""A compaction and a reindex without vector reuse on the bench's server, as an operator runs
them (``POST /api/v1/admin/reindex``): search latency while each runs against the same searches
on the quiet index before it, the reindex's rate against the raw embedder on every core, and
the serving process's memory before and after each handover."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig, BenchError
from tooling.benchmark.ingest import light_search_load
from tooling.benchmark.memory import serve_memory
from tooling.benchmark.queries import QueryGenerator
from tooling.benchmark.stats import latency_summary, ratio

if TYPE_CHECKING:
    from tooling.benchmark.server import Server

_DONE = ("active", "failed", "refused")
_QUIET_SEARCHES = 200


async def run_job(client: Client, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Start a reindex/compaction and wait (bounded) until it ended; the job as the API reports
    it, plus the seconds this client saw it run."""
    started = time.perf_counter()
    await client.request("POST", "/api/v1/admin/reindex", json=body)
    while True:
        _, response = await client.request("GET", "/api/v1/admin/reindex")
        job: dict[str, Any] = response.json()
        if job["state"] in _DONE:
            job["seconds"] = round(time.perf_counter() - started, 2)
            if job["state"] != "active":
                raise BenchError(f"{body} ended {job['state']}: {job.get('error')}")
            return job
        if time.perf_counter() - started > timeout_s:
            raise BenchError(f"{body} did not end within {timeout_s:.0f} s: {job}")
        await asyncio.sleep(0.25)


async def _sequential(client: Client, queries: QueryGenerator, done: asyncio.Event,
                      latencies: list[float]) -> None:
    while not done.is_set():
        latencies.append((await client.find(next(queries)))[0])


def _builder(job: dict[str, Any]) -> dict[str, Any]:
    progress = job.get("progress") or {}
    return {k: progress.get(k) for k in ("embedded", "reused", "read", "fill_s", "optimize_s")}


async def compaction(client: Client, queries: QueryGenerator, config: BenchConfig,
                     server: Server) -> dict[str, Any]:
    """One client searching back to back: on the quiet index, then while a compaction runs
    (export, build in the child at low priority, handover)."""
    quiet = [(await client.find(next(queries)))[0] for _ in range(_QUIET_SEARCHES)]
    before = serve_memory(server)
    done, during = asyncio.Event(), []
    searching = asyncio.create_task(_sequential(client, queries, done, during))
    try:
        job = await run_job(client, {"source": "compaction"}, config.reindex_timeout_s)
    finally:
        done.set()
        await searching
    quiet_summary, during_summary = latency_summary(quiet), latency_summary(during)
    return {"seconds": job["seconds"], "figures": job["figures"], "builder": _builder(job),
            "quiet": quiet_summary, "during": during_summary,
            "p50_vs_quiet": ratio(during_summary["p50_ms"], quiet_summary["p50_ms"]),
            "serve_rss_before_mib": before["serve_rss_mib"],
            "serve_rss_after_mib": serve_memory(server)["serve_rss_mib"]}


async def reindex_without_reuse(client: Client, queries: QueryGenerator, config: BenchConfig,
                                raw_rate: float | None, server: Server) -> dict[str, Any]:
    """A reindex from the topic that embeds every text again (what a model upgrade costs),
    under the light search load: texts/s from request to handover, against the raw rate."""
    before = serve_memory(server)
    done, during = asyncio.Event(), []
    load = asyncio.create_task(light_search_load(client, queries, config.search_load_rate, done,
                                                 during))
    try:
        job = await run_job(client, {"source": "topic", "reuse_vectors": False},
                            config.reindex_timeout_s)
    finally:
        done.set()
        await load
    builder = _builder(job)
    embedded = builder.get("embedded") or 0
    rate = embedded / job["seconds"] if job["seconds"] else None
    fill_rate = embedded / builder["fill_s"] if builder.get("fill_s") else None
    return {"seconds": job["seconds"], "figures": job["figures"], "builder": builder,
            "texts_per_s": None if rate is None else round(rate, 1),
            "fill_texts_per_s": None if fill_rate is None else round(fill_rate, 1),
            "raw_embed_rate_per_s": None if raw_rate is None else round(raw_rate, 1),
            "vs_raw": ratio(rate, raw_rate), "during": latency_summary(during),
            "search_load_per_s": config.search_load_rate,
            "serve_rss_before_mib": before["serve_rss_mib"],
            "serve_rss_after_mib": serve_memory(server)["serve_rss_mib"]}
