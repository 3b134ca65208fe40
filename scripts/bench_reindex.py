"""Benchmark index generations at N projects against a real `handwerk serve` (own local broker,
Qdrant Edge, bundled model): legacy import, search before and after a compaction, reindex from
the topic with and without vector reuse, backfill from the database, and the longest search
pause while a reindex hands over. Prints one JSON document (and writes it with --out).

    .venv/bin/python scripts/bench_reindex.py --projects 20000 --out bench-results/reindex-20k.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handwerk.kafka import free_port  # noqa: E402

LEGACY_CACHE = Path(tempfile.gettempdir()) / "handwerk-bench-legacy"
QUERIES = ["Einbauküche aus Eiche mit Kochinsel", "Treppe aus Buche mit Podest",
           "Kleiderschrank mit Schiebetüren", "oak kitchen with island", "Badmöbel Teak",
           "Dielenboden Lärche Altbau", "spiral staircase walnut", "Sauna Zirbe Keller"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_latencies(http: httpx.Client, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        r = http.post("/api/v1/similarity/find-similar", json={"query": QUERIES[i % len(QUERIES)],
                                                              "top_k": 10})
        r.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    server_ms = []  # the service's own figure, without HTTP
    for i in range(n):
        body = http.post("/api/v1/similarity/find-similar", json={
            "query": QUERIES[i % len(QUERIES)], "top_k": 10}).json()
        server_ms.append(body["search_time_ms"])
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 0.99), 2),
            "server_p50_ms": round(statistics.median(server_ms), 2),
            "server_p99_ms": round(percentile(server_ms, 0.99), 2)}


def wait(check: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what)


def reindex(http: httpx.Client, hammer: bool = False, **body: Any) -> dict[str, Any]:
    """Run one reindex to its end; with ``hammer`` two clients search all along."""
    seen: list[tuple[float, float, int]] = []  # (start, seconds, status)
    stop = threading.Event()

    def search(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            n = 0
            while not stop.is_set():
                started = time.perf_counter()
                r = client.post("/api/v1/similarity/find-similar", json={
                    "query": QUERIES[n % len(QUERIES)], "top_k": 10})
                seen.append((started, time.perf_counter() - started, r.status_code))
                n += 1

    threads = [threading.Thread(target=search, args=(str(http.base_url),)) for _ in range(2)] \
        if hammer else []
    for t in threads:
        t.start()
    started = time.perf_counter()
    r = http.post("/api/v1/admin/reindex", json=body)
    r.raise_for_status()
    job = wait(lambda: (j := http.get("/api/v1/admin/reindex").json())["state"] in
               ("active", "failed", "refused") and j, 7200, "reindex", 0.25)
    elapsed = time.perf_counter() - started
    stop.set()
    for t in threads:
        t.join()
    out = {"seconds": round(elapsed, 1), "state": job["state"], "error": job["error"],
           "figures": job["figures"], "builder": {k: job["progress"].get(k) for k in (
               "embedded", "reused", "read", "fill_s", "optimize_s", "tombstones_dropped")}}
    if seen:
        latencies = [s * 1000 for _, s, _ in seen]
        out["searches_during"] = {
            "count": len(seen), "errors": sum(1 for *_, c in seen if c != 200),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1)}
    return out


def main(projects: int = 20_000, out: Path | None = None, seed: int = 11,
         legacy_cache: Path = LEGACY_CACHE,
         searches: int = 300, skip_no_reuse: bool = False) -> None:
    from tests.legacy_db import make_legacy_db

    results: dict[str, Any] = {"projects": projects, "machine": f"{os.cpu_count()} cores"}
    legacy = legacy_cache / f"legacy-{projects}-{seed}.sqlite"
    if not legacy.exists():
        from handwerk.embedding.embedder import Embedder

        legacy_cache.mkdir(parents=True, exist_ok=True)
        embedder = Embedder(threads=2)
        embedder.load()
        started = time.perf_counter()
        make_legacy_db(legacy.with_suffix(".tmp"), projects, seed=seed, embedder=embedder)
        legacy.with_suffix(".tmp").rename(legacy)
        results["legacy_db_built_s"] = round(time.perf_counter() - started, 1)
        embedder.close()

    data = Path(tempfile.mkdtemp(prefix="handwerk-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env.update({"HANDWERK_DATA_DIR": str(data), "HANDWERK_COMPACTION_CHECK_INTERVAL_S": "36000",
                "HANDWERK_MODEL_CACHE_DIR": str(Path.home() / ".cache" / "handwerk")})
    log = (data / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "handwerk", "serve", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        wait(lambda: _ok(http, "/readyz"), 180, "serve ready")
        stats = lambda: http.get("/api/v1/similarity/stats").json()  # noqa: E731

        started = time.perf_counter()
        imported = subprocess.run([sys.executable, "-m", "handwerk", "import-legacy", str(legacy),
                                   "--data-dir", str(data), "--json"], env=env,
                                  capture_output=True, text=True, check=False)
        report = json.loads(imported.stdout)
        wait(lambda: stats()["points_count"] >= report["migrated"], 3600, "import indexed", 1.0)
        results["legacy_import"] = {
            "migrated": report["migrated"], "failed": report["failed"],
            "vectors_reused": report["vectors_reused"], "import_s": report["seconds"],
            "per_project_ms": report["per_project_ms"],
            "until_all_searchable_s": round(time.perf_counter() - started, 1)}
        print(json.dumps(results), file=sys.stderr)

        s = stats()
        results["search_before_compaction"] = {
            **search_latencies(http, searches), "points": s["points_count"],
            "indexed_vectors": s["indexed_vectors_count"], "generation": s["generation"]}
        results["compaction"] = reindex(http, source="compaction")
        s = stats()
        results["search_after_compaction"] = {
            **search_latencies(http, searches), "points": s["points_count"],
            "indexed_vectors": s["indexed_vectors_count"], "generation": s["generation"]}
        print(json.dumps(results), file=sys.stderr)

        results["reindex_topic_reuse"] = reindex(http, hammer=True, source="topic")
        results["backfill_db_reuse"] = reindex(http, source="db")
        print(json.dumps(results), file=sys.stderr)
        if not skip_no_reuse:
            results["reindex_topic_no_reuse"] = reindex(http, source="topic", reuse_vectors=False)
        results["final_stats"] = {k: stats()[k] for k in ("points_count", "indexed_vectors_count",
                                                          "tombstones_count", "generation")}
    finally:
        server.terminate()
        server.wait(60)
        http.close()
    document = json.dumps(results, indent=2)
    print(document)
    if out is not None:
        out.write_text(document + "\n")


def _ok(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    typer.run(main)
