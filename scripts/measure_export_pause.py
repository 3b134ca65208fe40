"""How long do searches wait while the serving process exports the live generation?

Starts a real ``handwerk serve`` (own local broker, Qdrant Edge, bundled model), imports N
legacy projects, then runs compactions (``export_points``) and reindexes from the topic with
vector reuse (``export_vectors``) while one client searches back to back. A second client
polls the job's phase, so each search is attributed to the phase it overlapped (the export,
the builder, the handover, ...). Prints one JSON document.

    .venv/bin/python scripts/measure_export_pause.py --projects 10000 --rounds 2

The legacy database has random unit vectors except for the rows the import's sample check
re-embeds (so it is cheap to build and the import reuses every vector); search relevance is
meaningless here, only latency counts. ``--prelude FILE`` runs FILE in the serving process
before handwerk starts (e.g. to put back an older export for a before/after comparison).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
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
sys.path.insert(0, str(ROOT / "scripts"))

from bench_reindex import LEGACY_CACHE, QUERIES, _ok, percentile, wait  # noqa: E402

from handwerk.kafka import free_port  # noqa: E402

EXPORT_PHASES = ("exporting the live generation", "exporting vectors for reuse")


def legacy_db(projects: int, seed: int) -> Path:
    """Random unit vectors, except the rows the import's sample check re-embeds."""
    from handwerk.embedding.embedder import Embedder
    from handwerk.operations.legacy import SAMPLE_SIZE, LegacyDatabase
    from tests.legacy_db import make_legacy_db, project_text

    path = LEGACY_CACHE / f"pause-{projects}-{seed}.sqlite"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    make_legacy_db(tmp, projects, seed=seed)
    rng = random.Random(seed)
    with sqlite3.connect(tmp) as db:
        rows = []
        for (pid,) in db.execute("SELECT id FROM projects").fetchall():
            v = [rng.gauss(0, 1) for _ in range(384)]
            norm = sum(x * x for x in v) ** 0.5
            rows.append((json.dumps([x / norm for x in v]), pid))
        db.executemany("UPDATE projects SET embedding = ? WHERE id = ?", rows)
    legacy = LegacyDatabase(tmp)
    sample = legacy.spread_with_vectors(SAMPLE_SIZE * 4)
    legacy.close()
    embedder = Embedder(threads=2)
    embedder.load()
    vectors = embedder.encode([project_text(r) for r in sample], "document")
    embedder.close()
    with sqlite3.connect(tmp) as db:
        db.executemany("UPDATE projects SET embedding = ? WHERE id = ?",
                       [(json.dumps([float(x) for x in v]), r["id"])
                        for r, v in zip(sample, vectors, strict=True)])
    tmp.rename(path)
    return path


def summary(latencies: list[float]) -> dict[str, float | int]:
    if not latencies:
        return {"count": 0}
    return {"count": len(latencies), "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1)}


def phase_at(timeline: list[tuple[float, str]], start: float, end: float) -> set[str]:
    """The phases seen while a search ran (the one current at its start, and any later)."""
    seen, before = set(), None
    for at, phase in timeline:
        if at <= start:
            before = phase
        elif at <= end:
            seen.add(phase)
    if before is not None:
        seen.add(before)
    return seen


def run_job(http: httpx.Client, **body: Any) -> dict[str, Any]:
    searches: list[tuple[float, float]] = []  # (start, end), perf_counter seconds
    timeline: list[tuple[float, str]] = []
    stop = threading.Event()

    def search() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            n = 0
            while not stop.is_set():
                started = time.perf_counter()
                client.post("/api/v1/similarity/find-similar", json={
                    "query": QUERIES[n % len(QUERIES)], "top_k": 10}).raise_for_status()
                searches.append((started, time.perf_counter()))
                n += 1

    def poll() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            while not stop.is_set():
                job = client.get("/api/v1/admin/reindex").json()
                phase = f"{job['state']}: {job['phase']}"
                if not timeline or timeline[-1][1] != phase:
                    timeline.append((time.perf_counter(), phase))
                stop.wait(0.02)

    searcher = threading.Thread(target=search)
    searcher.start()
    time.sleep(1.0)  # a baseline before the job starts
    started = time.perf_counter()
    http.post("/api/v1/admin/reindex", json=body).raise_for_status()
    poller = threading.Thread(target=poll)
    poller.start()
    job = wait(lambda: (j := http.get("/api/v1/admin/reindex").json())["state"] in
               ("active", "failed", "refused") and j, 900, "reindex", 0.1)
    stop.set()
    searcher.join()
    poller.join()
    by_phase: dict[str, list[float]] = {}
    export, rest = [], []
    for s, e in searches:
        ms = (e - s) * 1000
        phases = phase_at(timeline, s, e) if s >= started else {"before the job"}
        for p in phases:
            by_phase.setdefault(p, []).append(ms)
        (export if any(p.split(": ", 1)[-1] in EXPORT_PHASES for p in phases) else rest).append(ms)
    export_s = [t for t, p in timeline if p.split(": ", 1)[-1] in EXPORT_PHASES]
    after = [t for t, p in timeline if t > (export_s[0] if export_s else 0)
             and p.split(": ", 1)[-1] not in EXPORT_PHASES]
    return {"body": body, "state": job["state"], "error": job["error"],
            "seconds": round(time.perf_counter() - started, 1),
            "export_phase_s": round(after[0] - export_s[0], 2) if export_s and after else None,
            "figures": job["figures"],
            "overlapping_export": summary(export), "rest": summary(rest),
            "by_phase": {p: summary(v) for p, v in by_phase.items()},
            "slowest": sorted(((round((e - s) * 1000, 1),
                                sorted(phase_at(timeline, s, e))) for s, e in searches),
                              reverse=True)[:5]}


def main(projects: int = 10_000, rounds: int = 2, seed: int = 11, prelude: Path | None = None,
         compaction: bool = True, out: Path | None = None) -> None:
    legacy = legacy_db(projects, seed)
    data = Path(tempfile.mkdtemp(prefix="handwerk-pause-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env.update({"HANDWERK_DATA_DIR": str(data), "HANDWERK_COMPACTION_CHECK_INTERVAL_S": "36000",
                "HANDWERK_MODEL_CACHE_DIR": str(Path.home() / ".cache" / "handwerk")})
    code = ("import runpy, sys; p, port = sys.argv[1:3]; "
            "sys.argv = ['handwerk', 'serve', '--port', port]; "
            "p and exec(compile(open(p).read(), p, 'exec'), {}); "
            "runpy.run_module('handwerk', run_name='__main__')")
    log = (data / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-c", code, str(prelude or ""), str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    results: dict[str, Any] = {"projects": projects, "prelude": str(prelude or ""), "jobs": []}
    try:
        wait(lambda: server.poll() is not None or _ok(http, "/readyz"), 180, "serve ready")
        if server.poll() is not None:
            raise RuntimeError(f"serve exited: see {data / 'serve.log'}")
        imported = subprocess.run([sys.executable, "-m", "handwerk", "import-legacy", str(legacy),
                                   "--data-dir", str(data), "--json"], env=env,
                                  capture_output=True, text=True, check=True)
        report = json.loads(imported.stdout)
        stats = lambda: http.get("/api/v1/similarity/stats").json()  # noqa: E731
        wait(lambda: stats()["points_count"] >= report["migrated"], 600, "import indexed", 1.0)
        results["import"] = {k: report[k] for k in ("migrated", "vectors_reused", "seconds")}
        for _ in range(rounds):
            for body in ([{"source": "compaction"}] if compaction else []) + [{"source": "topic"}]:
                results["jobs"].append(run_job(http, **body))
                print(json.dumps(results["jobs"][-1]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait(60)
        http.close()
    document = json.dumps(results, indent=2)
    print(document)
    if out is not None:
        out.write_text(document + "\n")


if __name__ == "__main__":
    typer.run(main)
