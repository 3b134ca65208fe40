"""Benchmark the whole pipeline over HTTP against a `handwerk serve` started here.

Prints: ingest rate, find-similar latency while ingesting (p50/p99/max), find-similar and
batch-similar latency after ingest, write-to-searchable latency, list-projects latency, and
the same search after a restart (HNSW built before readiness). Numbers are percentiles from
one run on a shared machine: compare ratios, not absolutes.

    .venv/bin/python scripts/bench.py --projects 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from handwerk.demo import demo_projects
from handwerk.kafka import free_port

QUERIES = ["Eichenküche mit Kochinsel", "Wendeltreppe mit Glasgeländer", "Einbauschrank unter der "
           "Dachschräge", "oak kitchen with breakfast bar", "Parkett Fischgrät Eiche geölt",
           "Holzfenster Denkmalschutz dreifach verglast", "Esstisch Nussbaum Baumkante",
           "built-in wardrobe with mirrored doors", "Terrassendeck Lärche", "Sideboard wandhängend"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 50), 2), "p99_ms": round(pct(values, 99), 2),
            "max_ms": round(max(values), 2)}


def start_server(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    process = subprocess.Popen([sys.executable, "-m", "handwerk", "serve", "--port", str(port),
                                "--data-dir", str(data)], env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)
    started = time.monotonic()
    while time.monotonic() - started < 300:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"server exited, see {log}")
        time.sleep(0.2)
    raise SystemExit("server not ready in 300 s")


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await client.request(method, url, **kw)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


async def find(client: httpx.AsyncClient, query: str) -> float:
    ms, _ = await timed(client, "POST", "/api/v1/similarity/find-similar",
                        json={"query": query, "top_k": 10, "threshold": 0.3})
    return ms


async def ingest(client: httpx.AsyncClient, count: int, concurrency: int) -> dict[str, Any]:
    projects = demo_projects(count, seed=11)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for p in projects:
        queue.put_nowait(p)
    done = asyncio.Event()
    during: list[float] = []

    async def writer() -> None:
        while not queue.empty():
            (await client.post("/api/v1/projects/", json=queue.get_nowait())).raise_for_status()

    async def prober() -> None:
        rng = random.Random(3)
        while not done.is_set():
            during.append(await find(client, rng.choice(QUERIES)))
            await asyncio.sleep(0.02)

    async def indexed() -> int:
        stats = (await client.get("/api/v1/similarity/stats")).json()
        return int(stats["points_count"])

    base = await indexed()
    probe = asyncio.create_task(prober())
    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    written = time.perf_counter() - started
    while await indexed() < base + count:
        await asyncio.sleep(0.1)
    total = time.perf_counter() - started
    done.set()
    await probe
    return {"projects": count, "api_write_rate_per_s": round(count / written, 1),
            "ingest_rate_events_per_s": round(count / total, 1),
            "seconds_until_all_searchable": round(total, 1),
            "find_similar_while_ingesting": summary(during)}


async def steady(client: httpx.AsyncClient, searches: int) -> dict[str, Any]:
    rng = random.Random(5)
    for q in QUERIES:  # warm-up
        await find(client, q)
    singles = [await find(client, rng.choice(QUERIES)) for _ in range(searches)]
    batches, server_batch = [], []
    for _ in range(max(20, searches // 5)):
        ms, body = await timed(client, "POST", "/api/v1/similarity/batch-similar",
                               json={"queries": rng.sample(QUERIES, 5), "top_k": 10})
        batches.append(ms)
        server_batch.append(body["batch_time_ms"])
    total = int((await client.get("/api/v1/projects", params={"limit": 1})).json()["total"])
    listing = []
    for _ in range(200):
        ms, _ = await timed(client, "GET", "/api/v1/projects",
                            params={"limit": 50, "offset": rng.randrange(0, max(1, total - 50))})
        listing.append(ms)
    return {"find_similar_http": summary(singles), "batch_similar_5_http": summary(batches),
            "batch_similar_5_server_batch_time": summary(server_batch),
            "list_projects_50_http": summary(listing)}


async def freshness(client: httpx.AsyncClient, writes: int) -> dict[str, Any]:
    """Write then wait (server-side, polling the index every 10 ms) until searchable."""
    latencies = []
    for project in demo_projects(writes, seed=99):
        ms, body = await timed(client, "POST", "/api/v1/projects/", params={"wait_indexed": 30},
                               json=project)
        if body["indexed_version"] != body["version"]:
            raise SystemExit("a write was not searchable within 30 s")
        latencies.append(ms)
    return {"write_to_searchable": summary(latencies)}


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        result = await ingest(client, args.projects, args.concurrency)
        result |= await freshness(client, args.writes)
        result |= await steady(client, args.searches)
        result["stats"] = (await client.get("/api/v1/similarity/stats")).json()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, port = Path(folder) / "data", free_port()
        log = Path(folder) / "serve.log"
        server = start_server(data, port, log)
        try:
            result = asyncio.run(run(f"http://127.0.0.1:{port}", args))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        started = time.perf_counter()
        server = start_server(data, port, log)  # optimize() runs before readiness
        result["restart_to_ready_s"] = round(time.perf_counter() - started, 1)
        try:
            async def after_restart() -> dict[str, Any]:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                    out = await steady(c, args.searches)
                    out["stats"] = (await c.get("/api/v1/similarity/stats")).json()
                    return out
            result["after_restart_hnsw_built"] = asyncio.run(after_restart())
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
