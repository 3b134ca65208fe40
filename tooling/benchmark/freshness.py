"""Write -> searchable at a fixed write rate, with where the time goes (the service's stage
histograms)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig
from tooling.benchmark.stats import latency_summary
from tooling.benchmark.timings import stage_quantiles
from tooling.demo import demo_projects


async def write_to_searchable(client: Client, config: BenchConfig) -> dict[str, Any]:
    """Open loop at ``write_rate``: each write is a POST that waits (server-side) until the
    index holds it, so its round trip is write -> searchable as a client sees it."""
    latencies: list[float] = []
    late = 0

    async def write(project: dict[str, Any]) -> None:
        nonlocal late
        ms, response = await client.request("POST", "/api/v1/projects/",
                                            params={"wait_indexed": 30}, json=project)
        body = response.json()
        if body["indexed_version"] != body["version"]:
            late += 1
        else:
            latencies.append(ms)

    tasks = []
    _, before = await client.request("GET", "/metrics")
    started = time.perf_counter()
    for i, project in enumerate(demo_projects(config.writes, seed=config.seed + 88)):
        delay = started + i / config.write_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(write(project)))
    await asyncio.gather(*tasks)
    _, after = await client.request("GET", "/metrics")
    return {"freshness": latency_summary(latencies) | {
        "writes_per_s": config.write_rate, "not_searchable_within_30s": late,
        "stages": stage_quantiles(before.text, after.text)}}
