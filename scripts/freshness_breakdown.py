"""Where write -> searchable time goes: client round trips of ``POST /api/v1/projects/
?wait_indexed=`` at a fixed open-loop rate, next to the service's own stage histograms.

Each run starts `handwerk serve` on a fresh data folder, loads ``--projects`` demo projects
with 8 concurrent writers (the ingest check: seconds until all are searchable, and the mean
micro-batch size), then sends ``--writes`` creates at ``--rate`` per second, each waiting until
the index holds it, and reads the stage histograms from ``/metrics`` before and after:

    event time -> Kafka record timestamp     handwerk_ml_event_to_broker_seconds
    record timestamp -> fetched              handwerk_ml_broker_to_fetch_seconds
    first fetched -> batch closed            handwerk_ml_batch_gather_seconds
    batch closed -> index written            handwerk_ml_batch_apply_seconds
                       (of which embedding)  handwerk_ml_embed_seconds
                       (of which the write)  handwerk_ml_index_write_seconds
    (then, off the path) the offset commit   handwerk_ml_offset_commit_seconds

Stage percentiles come from histogram buckets (interpolated as Prometheus'
``histogram_quantile`` does), so they are approximate; the client figures are exact. The client
also splits each round trip at the write's event time (``created_at`` of the response: the same
clock, same machine): request -> event time (HTTP and the transaction) and event time ->
response (the pipeline plus the wake of the waiting request).

An A/B: several ``--arm LABEL[:KEY=VALUE,...]``, run interleaved (A, B, A, B, ...) for
``--rounds`` rounds; each arm's environment is added to the server's (e.g. a setting, or a
``PYTHONPATH`` with another code tree). Another code tree is a folder ``T/handwerk`` of
symlinks shaped like ``scripts/typecheck.sh`` builds one (``handwerk/*`` plus ``consumer``,
``api``, ``outbox``, ``producer``), with the changed parts pointing at the other version; run
from a folder without a ``handwerk/`` (``python -m handwerk`` puts the working folder first on
``sys.path``, so from the repository root the checkout would win over ``PYTHONPATH``).

    .venv/bin/python scripts/freshness_breakdown.py --rounds 1
    cd /tmp && /work/main/.venv/bin/python /work/main/scripts/freshness_breakdown.py \\
        --rounds 3 --arm old:PYTHONPATH=/tmp/hw-old --arm new --out /tmp/ab.json
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tooling/ (appended: never shadows handwerk)

from tooling.benchmark import Server, latency_summary, stage_quantiles  # noqa: E402
from tooling.demo import demo_projects  # noqa: E402


@dataclass(frozen=True)
class Arm:
    label: str
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Arm:
        label, _, rest = text.partition(":")
        env = dict(item.split("=", 1) for item in rest.split(",") if item)
        return cls(label, env)


def _mean(name: str, before: str, after: str) -> float | None:
    """Mean of a histogram between two scrapes, from its _sum and _count."""
    def read(text: str) -> tuple[float, float]:
        total = count = 0.0
        for family in text_string_to_metric_families(text):
            if family.name == name:
                for s in family.samples:
                    if s.name.endswith("_sum"):
                        total += s.value
                    elif s.name.endswith("_count"):
                        count += s.value
        return total, count
    (s0, c0), (s1, c1) = read(before), read(after)
    return (s1 - s0) / (c1 - c0) if c1 > c0 else None


async def _load(http: httpx.AsyncClient, projects: int, writers: int = 8) -> dict[str, Any]:
    before = (await http.get("/metrics")).text
    todo = iter(demo_projects(projects, seed=5))
    started = time.perf_counter()

    async def writer() -> None:
        for project in todo:
            (await http.post("/api/v1/projects/", json=project)).raise_for_status()

    await asyncio.gather(*(writer() for _ in range(writers)))
    deadline = time.monotonic() + 600
    while (await http.get("/api/v1/similarity/stats")).json()["points_count"] < projects:
        if time.monotonic() > deadline:
            raise RuntimeError("projects not searchable within 600 s")
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    after = (await http.get("/metrics")).text
    batch = _mean("handwerk_ml_batch_size", before, after)
    return {"projects": projects, "seconds": round(seconds, 2),
            "per_s": round(projects / seconds, 1),
            "mean_batch": None if batch is None else round(batch, 1)}


async def _writes(http: httpx.AsyncClient, writes: int, rate: float) -> dict[str, Any]:
    round_trips: list[float] = []
    to_event: list[float] = []
    from_event: list[float] = []
    late = 0

    async def write(project: dict[str, Any]) -> None:
        nonlocal late
        sent_wall, sent = time.time(), time.perf_counter()
        response = await http.post("/api/v1/projects/", params={"wait_indexed": 30}, json=project)
        elapsed, done_wall = time.perf_counter() - sent, time.time()
        response.raise_for_status()
        body = response.json()
        if body["indexed_version"] != body["version"]:
            late += 1
            return
        event = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")).timestamp()
        round_trips.append(elapsed * 1000)
        to_event.append((event - sent_wall) * 1000)
        from_event.append((done_wall - event) * 1000)

    for project in demo_projects(20, seed=91):  # warm-up, not counted
        await write(project)
    for figures in (round_trips, to_event, from_event):
        figures.clear()
    before = (await http.get("/metrics")).text
    tasks = []
    started = time.perf_counter()
    for i, project in enumerate(demo_projects(writes, seed=88)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(write(project)))
    await asyncio.gather(*tasks)
    after = (await http.get("/metrics")).text
    stages = stage_quantiles(before, after)
    batch = _mean("handwerk_ml_batch_size", before, after)
    return {"round_trip": latency_summary(round_trips),
            "request_to_event": latency_summary(to_event),
            "event_to_response": latency_summary(from_event),
            "stages": stages, "late": late,
            "mean_batch": None if batch is None else round(batch, 2)}


async def _compact(http: httpx.AsyncClient) -> dict[str, Any]:
    """Rebuild the live generation (as the bench's wait for the HNSW graph does) and wait
    until the new one is active: writes then go to a generation a builder made."""
    started = time.perf_counter()
    (await http.post("/api/v1/admin/reindex", json={"source": "compaction"})).raise_for_status()
    deadline = time.monotonic() + 900
    while (job := (await http.get("/api/v1/admin/reindex")).json())["state"] not in (
            "active", "failed", "refused"):
        if time.monotonic() > deadline:
            raise RuntimeError("compaction did not end within 900 s")
        await asyncio.sleep(0.5)
    return {"state": job["state"], "seconds": round(time.perf_counter() - started, 1)}


async def _run(url: str, projects: int, writes: int, rate: float,
               compact: bool) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=64)) as http:
        load = await _load(http, projects)
        compaction = {"compaction": await _compact(http)} if compact else {}
        return {"ingest": load} | compaction | await _writes(http, writes, rate)


def _row(label: str, figures: Mapping[str, Any]) -> str:
    p50, p99 = figures.get("p50_ms"), figures.get("p99_ms")
    return f"  {label:28s} p50 {p50!s:>7} ms   p99 {p99!s:>7} ms"


def _print(arm: str, round_: int, result: Mapping[str, Any]) -> None:
    ingest = result["ingest"]
    print(f"round {round_} arm {arm}: ingest {ingest['projects']} in {ingest['seconds']} s "
          f"({ingest['per_s']}/s, mean batch {ingest['mean_batch']}); writes mean batch "
          f"{result['mean_batch']}, not searchable in 30 s: {result['late']}", flush=True)
    print(_row("client round trip", result["round_trip"]))
    print(_row("request -> event time", result["request_to_event"]))
    print(_row("event time -> response", result["event_to_response"]))
    for label, figures in result["stages"].items():
        print(_row(label, figures))


def _summary(results: Mapping[str, list[dict[str, Any]]]) -> None:
    print("\nsummary (median over rounds of each run's figure)")
    for arm, runs in results.items():
        def med(path: tuple[str, ...], runs: list[dict[str, Any]] = runs) -> float | None:
            values = []
            for run in runs:
                value: Any = run
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                if value is not None:
                    values.append(float(value))
            return round(statistics.median(values), 1) if values else None
        print(f"  {arm:8s} round trip p50 {med(('round_trip', 'p50_ms'))} p99 "
              f"{med(('round_trip', 'p99_ms'))} | ingest {med(('ingest', 'per_s'))}/s, mean "
              f"batch {med(('ingest', 'mean_batch'))}")


def main(writes: int = 200, rate: float = 20.0, projects: int = 200, rounds: int = 1,
         arm: list[str] = typer.Option(["current"], help="LABEL[:KEY=VALUE,...]"),  # noqa: B008
         out: Path = Path("bench-results/freshness-breakdown.json"),
         compact: bool = typer.Option(False, help="Compact after loading, before the writes.")
         ) -> None:
    arms = [Arm.parse(a) for a in arm]
    results: dict[str, list[dict[str, Any]]] = {a.label: [] for a in arms}
    model_cache = Path.home() / ".cache" / "handwerk" / "models"
    for round_ in range(rounds):
        for a in arms:
            with tempfile.TemporaryDirectory(prefix="handwerk-fresh-") as folder:
                server = Server(Path(folder) / "data", Path(folder) / "serve.log", model_cache)
                server.env.update(a.env)
                server.start()
                try:
                    result = asyncio.run(_run(server.url, projects, writes, rate, compact))
                finally:
                    server.stop()
            result["load_average"] = os.getloadavg()
            results[a.label].append(result)
            _print(a.label, round_, result)
    _summary(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"writes": writes, "rate": rate, "projects": projects,
                               "arms": {a.label: a.env for a in arms}, "results": results},
                              indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    typer.run(main)
