"""How the encoder, the ceiling of search and ingest here, scales with cores: the same
measurement pinned (``taskset``) to 1 core and to 2 cores, each in a fresh process.

Per core count: document embedding rate (the ingest ceiling; ``threads`` = cores), one query's
latency (p50/p99, the find-similar floor), and a batch of 8 queries (what micro-batching buys per
query). Nothing else runs in those processes; run it on a quiet machine.

    .venv/bin/python scripts/core_scaling.py --out bench-results/core-scaling.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tooling/ (appended: never shadows handwerk)

_CHILD = "--child"


def _measure(threads: int, documents: int, queries: int) -> dict[str, object]:
    from handwerk.contract.text import project_text
    from handwerk.embedding.embedder import Embedder
    from handwerk.embedding.specs import resolve_model
    from tooling.benchmark import QueryGenerator, latency_summary
    from tooling.demo import demo_projects

    embedder = Embedder.from_spec(resolve_model(None), cache_dir=Path.home() / ".cache" /
                                  "handwerk" / "models", threads=threads, query_threads=threads,
                                  batch_size=32)
    embedder.load()
    texts = [project_text(p) for p in demo_projects(documents, seed=3)]
    embedder.encode(texts[:32], "document")
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        embedder.encode(texts[i:i + 32], "document")
    docs_per_s = len(texts) / (time.perf_counter() - started)
    generator = QueryGenerator(5)
    for query in generator.take(10):
        embedder.encode([query], "query")
    single = []
    for query in generator.take(queries):
        started = time.perf_counter()
        embedder.encode([query], "query")
        single.append((time.perf_counter() - started) * 1000)
    batch = []
    for _ in range(queries // 8):
        started = time.perf_counter()
        embedder.encode(generator.take(8), "query")
        batch.append((time.perf_counter() - started) * 1000)
    embedder.close()
    return {"threads": threads, "documents_per_s": round(docs_per_s, 1),
            "query": latency_summary(single), "batch8": latency_summary(batch),
            "batch8_per_query_p50_ms": round(float(latency_summary(batch)["p50_ms"] or 0) / 8, 2)}


def main(documents: int = 640, queries: int = 200,
         out: Path = Path("bench-results/core-scaling.json")) -> None:
    available = sorted(os.sched_getaffinity(0))
    rows = []
    for cores in (1, 2):
        if len(available) < cores:
            break
        cpus = ",".join(str(c) for c in available[:cores])
        result = subprocess.run(
            ["taskset", "-c", cpus, sys.executable, __file__, _CHILD, str(cores), str(documents),
             str(queries)], check=True, capture_output=True, text=True)
        row = json.loads(result.stdout.strip().splitlines()[-1]) | {"cores": cores}
        rows.append(row)
        print(f"{cores} core(s): {row['documents_per_s']} documents/s; one query p50 "
              f"{row['query']['p50_ms']} ms p99 {row['query']['p99_ms']} ms; batch of 8 p50 "
              f"{row['batch8']['p50_ms']} ms ({row['batch8_per_query_p50_ms']} ms per query)",
              flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "load_average_after": os.getloadavg()}, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == _CHILD:
        print(json.dumps(_measure(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    else:
        typer.run(main)
