"""What a run is given (``BenchConfig``, a log) and how it fails (``BenchError``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchConfig:
    projects: int = 10_000
    concurrency: int = 8
    search_load_rate: float = 10.0
    single_searches: int = 500
    batches: int = 100
    estimates: int = 100
    list_requests: int = 100
    throughput_clients: int = 8
    throughput_seconds: float = 15.0
    writes: int = 200
    write_rate: float = 20.0
    quality_queries: int = 100
    measured_ingest: int = 10_000
    raw_sample: int = 2_000
    ingest_timeout_s: float = 3_600.0
    hnsw_wait_s: float = 900.0
    vector_store: str | None = str(Path.home() / ".cache" / "handwerk" / "bench")
    prepare_only: bool = False
    restart: bool = False
    reindex: bool = True
    reindex_timeout_s: float = 3_600.0
    seed: int = 11


Log = Callable[[str], None]


class BenchError(RuntimeError):
    pass
