"""A/B of the serving event loop: asyncio vs uvloop (``HANDWERK_EVENT_LOOP``), interleaved
(A, B, A, B, ...) on one data folder so both see the same machine noise.

Each round starts `handwerk serve` with one loop, loads the demo projects once (first round),
then runs ``--clients`` concurrent clients for ``--seconds`` against two routes: find-similar
with distinct queries (encoder-bound) and a cheap project read (loop- and HTTP-bound), and
prints requests/s and latency percentiles per loop.

    .venv/bin/python scripts/ab_event_loop.py --rounds 2 --seconds 10
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import typer

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tooling/ (appended: never shadows handwerk)

from tooling.benchmark import QueryGenerator, Server, latency_summary  # noqa: E402
from tooling.demo import demo_projects  # noqa: E402


async def _load(url: str, projects: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        ids = []
        for project in demo_projects(projects, seed=5):
            response = await http.post("/api/v1/projects/", json=project)
            response.raise_for_status()
            ids.append(response.json()["id"])
        last = ids[-1]
        await http.get(f"/api/v1/projects/{last}", params={"wait_indexed": 30})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stats = (await http.get("/api/v1/similarity/stats")).json()
            if stats["points_count"] >= projects:
                return ids
            await asyncio.sleep(0.2)
        raise RuntimeError("projects not searchable within 300 s")


async def _hammer(url: str, clients: int, seconds: float, request) -> dict[str, object]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        for _ in range(20):  # warm-up
            await request(http)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await request(http)
                response.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latency_summary(latencies) | {"requests_per_s": round(len(latencies) / elapsed, 1)}


def main(rounds: int = 2, seconds: float = 10.0, clients: int = 8, projects: int = 300,
         out: Path = Path("bench-results/ab-event-loop.json")) -> None:
    queries = QueryGenerator(23)
    results: dict[str, list[dict[str, object]]] = {"asyncio": [], "uvloop": []}
    model_cache = Path.home() / ".cache" / "handwerk" / "models"
    with tempfile.TemporaryDirectory(prefix="handwerk-ab-") as folder:
        ids: list[str] = []
        for round_ in range(rounds):
            for loop in ("asyncio", "uvloop"):
                os.environ["HANDWERK_EVENT_LOOP"] = loop
                server = Server(Path(folder) / "data", Path(folder) / "serve.log", model_cache)
                server.start()
                try:
                    if not ids:
                        ids = asyncio.run(_load(server.url, projects))
                    some = ids[len(ids) // 2]
                    find = asyncio.run(_hammer(server.url, clients, seconds, lambda h: h.post(
                        "/api/v1/similarity/find-similar",
                        json={"query": next(queries), "top_k": 10})))
                    read = asyncio.run(_hammer(server.url, clients, seconds,
                                               lambda h, some=some: h.get(f"/api/v1/projects/{some}")))
                finally:
                    server.stop()
                results[loop].append({"round": round_, "find_similar": find, "read": read})
                print(f"round {round_} {loop:8s} find-similar {find['requests_per_s']:>7}/s "
                      f"p50 {find['p50_ms']} p99 {find['p99_ms']} | read "
                      f"{read['requests_per_s']:>7}/s p50 {read['p50_ms']} p99 {read['p99_ms']}",
                      flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"clients": clients, "seconds": seconds, "projects": projects,
                               "load_average_after": os.getloadavg(), "results": results},
                              indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    typer.run(main)
