"""How long each Qdrant Edge adapter call blocks the event loop, at a given index size.

For every operation it prints the awaited call's duration and the longest stall of the event
loop while the call ran (a heartbeat task sleeps 0.5 ms and records the gaps between its
wake-ups; a gap far above 0.5 ms is time the loop could not run anything else: API requests,
Kafka heartbeats). Then it runs searches every 5 ms while the index ingests, which is what a
user of the API sees during a backfill. Percentiles from one run on a shared machine.

    .venv/bin/python scripts/measure_edge_blocking.py --points 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import SearchFilters, UpsertPoint

DIM = 384


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 50), 2), "p99": round(pct(values, 99), 2),
            "max": round(max(values), 2)}


class Heartbeat:
    """Records (start, end) of every gap between wake-ups of a task that sleeps 0.5 ms."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(0.0005)
            now = time.perf_counter()
            self.gaps.append((last, now))
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def stall_ms(self, start: float, end: float) -> float:
        """Longest gap overlapping [start, end], in ms."""
        overlapping = [b - a for a, b in self.gaps if b >= start and a <= end]
        return 1000 * max(overlapping, default=end - start)


def make_points(rng: np.random.Generator, count: int, version: int) -> list[UpsertPoint]:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kinds = ["kitchen", "stairs", "wardrobe", "flooring", "windows", "furniture"]
    return [UpsertPoint(str(uuid.uuid4()), version, vectors[i].tolist(), {
        "name": f"project {i}", "project_type": kinds[i % len(kinds)], "region": "Bayern",
        "final_price": float(1000 + i), "version": version, "state": "live",
        "text_hash": uuid.uuid4().hex * 2, "source": "urn:handwerk:outbox"}) for i in range(count)]


async def timed(beat: Heartbeat, call: Callable[[], Awaitable[Any]], reps: int
                ) -> dict[str, dict[str, float]]:
    durations, stalls = [], []
    for _ in range(reps):
        start = time.perf_counter()
        await call()
        end = time.perf_counter()
        await asyncio.sleep(0.003)  # let the heartbeat record the gap that spans the call
        durations.append(1000 * (end - start))
        stalls.append(beat.stall_ms(start, end))
    return {"call_ms": summary(durations), "loop_stall_ms": summary(stalls)}


async def measure(points: int, reps: int, folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    index = EdgeVectorIndex(folder, "projects", model="measure", dimension=DIM)
    await index.open()
    results: dict[str, Any] = {"points": points}
    try:
        ids: list[str] = []
        load_start = time.perf_counter()
        for _ in range(0, points, 256):
            batch = make_points(rng, 256, 1)
            ids.extend(p.project_id for p in batch)
            await index.write(batch, [])
        results["load_s"] = round(time.perf_counter() - load_start, 1)
        batches = iter([make_points(rng, 256, 2) for _ in range(reps)])
        sample = random.Random(7).sample(ids, 256)
        query = make_points(rng, 1, 1)[0].vector
        queries = [p.vector for p in make_points(rng, 5, 1)]
        beat = Heartbeat()  # started after all test data exists: only the calls are timed
        beat.start()
        await asyncio.sleep(0.01)
        results["write_256_upsert_flush"] = await timed(beat, lambda: index.write(next(batches), []),
                                                        reps)
        results["all_states"] = await timed(beat, index.all_states, max(3, reps // 4))
        results["get_states_256"] = await timed(beat, lambda: index.get_states(sample), reps)
        results["search_top5"] = await timed(beat, lambda: index.search(
            query, top_k=5, threshold=0.0, filters=SearchFilters()), reps)
        results["search_batch_5"] = await timed(beat, lambda: index.search_batch(
            queries, top_k=5, threshold=0.0, filters=SearchFilters()), reps)
        await beat.stop()
        results["search_during_ingest_ms"] = await search_during_ingest(index, rng, query, reps)
    finally:
        await index.close()
    return results


async def search_during_ingest(index: EdgeVectorIndex, rng: np.random.Generator,
                               query: Any, batches: int) -> dict[str, float]:
    """A search due every 5 ms while another task writes 256-point batches back to back
    (yielding between batches, as the consumer does while it fetches and embeds). Latency
    counts from when the search was due, so time spent waiting for the loop is included."""
    pending = [make_points(rng, 256, 3) for _ in range(batches)]
    done = asyncio.Event()
    latencies: list[float] = []

    async def ingest() -> None:
        await asyncio.sleep(0.01)
        for batch in pending:
            await index.write(batch, [])
            await asyncio.sleep(0)
        done.set()

    async def search() -> None:
        due = time.perf_counter()
        while not done.is_set():
            await index.search(query, top_k=5, threshold=0.0, filters=SearchFilters())
            latencies.append(1000 * (time.perf_counter() - due))
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)

    await asyncio.gather(search(), ingest())
    return {**summary(latencies), "searches": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-blocking-") as folder:
        print(json.dumps(asyncio.run(measure(args.points, args.reps, Path(folder))), indent=2))


if __name__ == "__main__":
    main()
