"""Search time against the number of points outside the HNSW graph (Qdrant Edge, 384-d random
vectors, in process): what ``HANDWERK_COMPACTION_UNINDEXED_POINTS`` trades against.

    .venv/bin/python scripts/measure_unindexed_cost.py 20000
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handwerk.index.edge.adapter import EdgeVectorIndex  # noqa: E402
from handwerk.index.keywords import Fusion  # noqa: E402
from handwerk.index.protocol import SearchFilters, UpsertPoint, VectorIndex  # noqa: E402

DIM = 384
rng = np.random.default_rng(1)


def points(start: int, count: int) -> list[UpsertPoint]:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return [UpsertPoint(str(uuid.UUID(int=start + i + 1)), 1, vectors[i].tolist(), {
        "project_type": "kitchen", "region": "Bayern", "final_price": 1.0, "name": "Küche",
        "description": f"Küche Eiche {i}", "wood_type": "Eiche", "text_hash": "h",
        "state": "live", "version": 1}) for i in range(count)]


async def timed(index: VectorIndex, queries: np.ndarray, text: str | None) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        await index.search(query.tolist(), top_k=10, threshold=0.0, filters=SearchFilters(),
                           text=text, fusion=Fusion("dbsf", prefetch=100))
        times.append((time.perf_counter() - started) * 1000)
    return times


async def report(index: VectorIndex, label: str) -> None:
    queries = rng.standard_normal((200, DIM)).astype(np.float32)
    dense = await timed(index, queries, None)
    hybrid = await timed(index, queries[:100], "Küche Eiche")
    print(f"{label}: dense p50 {statistics.median(dense):.2f} ms, p90 "
          f"{np.percentile(dense, 90):.2f} ms; hybrid p50 {statistics.median(hybrid):.2f} ms",
          flush=True)


async def main(in_graph: int) -> None:
    index = EdgeVectorIndex(Path(tempfile.mkdtemp()), "p", model="m", dimension=DIM)
    await index.open()
    for start in range(0, in_graph, 1000):
        await index.write(points(start, 1000), [])
    index.optimize()
    await report(index, "0 outside the graph")
    added = 0
    for outside in (500, 1000, 2000, 4000, 9000):
        await index.write(points(in_graph + added, outside - added), [])
        added = outside
        stats = await index.stats()
        await report(index, f"{stats.vectors_count - stats.indexed_vectors_count} outside the graph")
    await index.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
