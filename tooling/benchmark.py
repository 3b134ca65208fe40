"""`handwerk bench`: where the whole service stands, measured over HTTP against a `handwerk
serve` this module starts on a temporary data folder (with its own local broker).

Phases, in this order (each bounded by a flag of ``BenchConfig``):

1. every project text embedded once in this process (the exact search's matrix), kept in
   ``vector_store`` so a later run on the same texts and model skips it (embedding 100,000
   texts takes about 45 min on 2 cores); then the raw embedder rate, timed in this run on a
   sample of the texts the pipeline will embed, before the server starts (nothing competes);
2. ingest through the REST API (``concurrency`` writers) until every project is searchable:
   the first ``measured_ingest`` projects are embedded by the pipeline (its rate against the
   raw rate, with a find-similar probe meanwhile); the rest reuse their vectors from the
   service's vector cache, preloaded from step 1 (a bulk load: same API, outbox, broker,
   consumer and index writes, no embedding). Then wait until compaction has put the points
   into the HNSW graph, as a serving index would be;
3. search quality: recall@10 of the service against the exact brute-force cosine search of the
   old design (numpy matrix product over all vectors), whose latency is the baseline;
4. find-similar with one client (with the ``Server-Timing`` stages, when the server sends them),
   batch-similar of 5, list projects (first page, deep offset);
5. find-similar throughput with ``throughput_clients`` concurrent clients;
6. write -> searchable at ``write_rate`` writes/s (POST ``?wait_indexed=``);
7. the serving process's RSS; optionally a restart (HNSW built before readiness) and search again.

Every query is distinct within a run (``QueryGenerator``). Numbers are percentiles from one run
on a possibly shared machine: the client runs on the same cores as the server.

The pure parts (percentiles, recall@k, Server-Timing parsing, target evaluation, queries) are
at the top and unit-tested; the rest drives the server.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tooling.demo import KINDS, REGIONS, WOODS

# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default), so p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p99, max in ms (rounded to 0.01); None for each figure when there are none."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 2),
            "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values), 2)}


def recall_at_k(found: Sequence[str], exact: Sequence[str], k: int = 10) -> float:
    """Share of the exact top-k that the search found in its own top-k. With fewer than k
    projects in the index, the exact list is shorter and the share is of that."""
    if k < 1:
        raise ValueError("k must be at least 1")
    truth = list(exact)[:k]
    if not truth:
        return 1.0
    return len(set(found[:k]) & set(truth)) / len(truth)


def brute_force_top_k(matrix: np.ndarray, vector: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k largest dot products (cosine for L2-normalised rows), best first:
    the old design's in-memory search."""
    scores = matrix @ vector
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``Server-Timing: queue;dur=0.1, embed;dur=3.2;desc="x", search;dur=0.4`` -> {name: ms}.

    Metrics without a (numeric) ``dur`` are left out; a name given twice is summed (the spec
    allows repeats); names are lower-cased. Malformed parts are skipped, never raised on."""
    stages: dict[str, float] = {}
    if not header:
        return stages
    for metric in _split_outside_quotes(header, ","):
        params = [p.strip() for p in _split_outside_quotes(metric, ";")]
        name = params[0].lower() if params else ""
        if not name or "=" in name:
            continue
        for param in params[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            try:
                duration = float(value.strip().strip('"'))
            except ValueError:
                break
            if math.isfinite(duration):
                stages[name] = stages.get(name, 0.0) + duration
            break
    return stages


def stage_medians(timings: Sequence[Mapping[str, float]],
                  stages: Sequence[str] = ("queue", "embed", "search", "serialize"),
                  ) -> dict[str, float | None]:
    """Median per stage over the responses that reported it; None for a stage none reported.
    Stages the server sent beyond ``stages`` are included too."""
    names = list(stages) + sorted({n for t in timings for n in t} - set(stages))
    out: dict[str, float | None] = {}
    for name in names:
        values = [t[name] for t in timings if name in t]
        out[name] = round(percentile(values, 50), 3) if values else None
    return out


STAGES = {
    "event -> broker": "handwerk_ml_event_to_broker_seconds",
    "broker -> fetched": "handwerk_ml_broker_to_fetch_seconds",
    "batch gather": "handwerk_ml_batch_gather_seconds",
    "batch apply": "handwerk_ml_batch_apply_seconds",
    "embed (in apply)": "handwerk_ml_embed_seconds",
    "index write (in apply, with flush)": "handwerk_ml_index_write_seconds",
    "offset commit (after)": "handwerk_ml_offset_commit_seconds",
    "server event -> written": "handwerk_ml_write_to_searchable_seconds",
    "relay publish (batch)": "handwerk_ml_relay_publish_seconds",
}
"""Where write -> searchable time goes: the service's own stage histograms (``/metrics``)."""

Histograms = dict[str, dict[float, float]]  # name -> {upper bound: cumulative count}


def parse_histograms(text: str) -> Histograms:
    """Cumulative bucket counts of every histogram (labels summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = out.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return out


def quantile(q: float, before: Mapping[float, float], after: Mapping[float, float]) -> float | None:
    """``histogram_quantile`` over the increase between two scrapes (linear within a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def stage_quantiles(before: str, after: str) -> dict[str, dict[str, float | None]]:
    """p50/p99 (ms) of every ``STAGES`` histogram between two ``/metrics`` scrapes."""
    h0, h1 = parse_histograms(before), parse_histograms(after)
    stages: dict[str, dict[str, float | None]] = {}
    for label, name in STAGES.items():
        if name not in h1:
            continue
        q = {p: quantile(p / 100, h0.get(name, {}), h1[name]) for p in (50, 99)}
        stages[label] = {f"p{p}_ms": None if v is None else round(v * 1000, 1)
                         for p, v in q.items()}
    return stages


@dataclass(frozen=True)
class Target:
    key: str
    """Dotted path into the results document, e.g. ``single.p50_ms``."""
    label: str
    op: Literal["<=", ">="]
    threshold: float
    unit: str = "ms"

    def describe(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {_number(self.threshold)}{_unit(self.unit)}"


@dataclass(frozen=True)
class Info:
    """A row without a target: context for the rows that have one."""

    key: str
    label: str
    unit: str = "ms"


TARGETS: tuple[Target | Info, ...] = (
    Info("ingest.raw_embed_rate_per_s", "raw embedder rate (in-process)", "/s"),
    Info("ingest.pipeline_rate_per_s", "pipeline ingest rate (REST -> searchable)", "/s"),
    Target("ingest.pipeline_vs_raw", "pipeline / raw embedder rate", ">=", 0.9, "x"),
    Info("bulk_load.rate_per_s", "bulk load, vectors reused (REST -> searchable)", "/s"),
    Info("hnsw_wait.seconds", "then until compaction had the points in the graph", "s"),
    Info("during_ingest.p50_ms", "find-similar during ingest p50"),
    Target("during_ingest.p99_ms", "find-similar during ingest p99", "<=", 50),
    Target("during_ingest.max_ms", "find-similar during ingest max", "<=", 200),
    Target("single.p50_ms", "find-similar, 1 client, p50", "<=", 5),
    Target("single.p99_ms", "find-similar, 1 client, p99", "<=", 15),
    Target("throughput.requests_per_s", "find-similar, N clients, throughput", ">=", 1000, "/s"),
    Target("throughput.p99_ms", "find-similar, N clients, p99", "<=", 50),
    Target("batch5.p50_ms", "batch-similar of 5, p50", "<=", 15),
    Target("list_first.p50_ms", "list projects (50), first page, p50", "<=", 5),
    Target("list_deep.p50_ms", "list projects (50), deep offset, p50", "<=", 5),
    Target("list_cursor.p50_ms", "list projects (50), deep keyset cursor, p50", "<=", 5),
    Target("freshness.p50_ms", "write -> searchable p50", "<=", 50),
    Target("freshness.p99_ms", "write -> searchable p99", "<=", 150),
    *(Info(f"freshness.stages.{label}.p50_ms", f"write -> searchable stage: {label} p50")
      for label in ("event -> broker", "broker -> fetched", "batch apply", "embed (in apply)",
                    "index write (in apply, with flush)")),
    Target("memory.serve_rss_mib", "serve process RSS", "<=", 1024, "MiB"),
    Info("memory.serve_peak_rss_mib", "serve process peak RSS (VmHWM)", "MiB"),
    Info("quality.hnsw_share", "share of points in the HNSW graph then", ""),
    Target("quality.recall_at_10", "recall@10 vs exact search", ">=", 0.95, ""),
    Info("quality.baseline_p50_ms", "old design: embed + brute force, p50"),
    Info("quality.baseline_search_p50_ms", "old design: brute force only, p50"),
    Info("quality.service_p50_ms", "service find-similar (same queries), p50"),
    Info("quality.speedup", "speedup of the service vs old design", "x"),
    Info("stages.queue", "find-similar stage: queue (median)"),
    Info("stages.embed", "find-similar stage: embed (median)"),
    Info("stages.search", "find-similar stage: search (median)"),
    Info("stages.serialize", "find-similar stage: serialize (median)"),
    Info("restart.ready_s", "restart -> ready", "s"),
    Info("restart.single.p50_ms", "after restart: find-similar p50"),
    Info("restart.single.p99_ms", "after restart: find-similar p99"),
)

Verdict = Literal["met", "missed", "n/a"]


def lookup(document: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted path, or None where any part is missing."""
    value: Any = document
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def verdict(target: Target, value: Any) -> Verdict:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    met = value <= target.threshold if target.op == "<=" else value >= target.threshold
    return "met" if met else "missed"


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _unit(unit: str) -> str:
    return "" if not unit else ("x" if unit == "x" else f" {unit}" if unit != "/s" else "/s")


def format_value(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{_number(value)}{_unit(unit)}"


def evaluate(results: Mapping[str, Any],
             targets: Sequence[Target | Info] = TARGETS) -> list[dict[str, Any]]:
    """One row per target (or info) whose section exists in ``results``: label, value, target,
    verdict ("met", "missed", "n/a"; None for info rows). A section that was not run (e.g.
    ``restart``) gives no rows; a missing value in a section that ran gives "n/a"."""
    rows = []
    for target in targets:
        if target.key.split(".")[0] not in results:
            continue
        value = lookup(results, target.key)
        row: dict[str, Any] = {"key": target.key, "label": target.label, "value": value,
                               "shown": format_value(value, target.unit), "unit": target.unit}
        if isinstance(target, Target):
            row |= {"target": target.describe(), "op": target.op, "threshold": target.threshold,
                    "verdict": verdict(target, value)}
        else:
            row |= {"target": None, "verdict": None}
        rows.append(row)
    return rows


def tally(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"met": 0, "missed": 0, "n/a": 0}
    for row in rows:
        if row["verdict"] is not None:
            counts[row["verdict"]] += 1
    return counts


class QueryGenerator:
    """Distinct, varied search phrases from the demo vocabulary (German and English, like the
    demo projects), deterministic for a seed. Never returns the same phrase twice."""

    _SHAPES = {
        "de": ["{name} aus {wood} mit {f1}", "{name} {wood} mit {f1} und {f2}",
               "{name} mit {f1} in {region}", "{wood} {name} für {context}",
               "{name} mit {f1}, {f2} und {f3}", "suche {name} aus {wood}, {region}"],
        "en": ["{name} in {wood} with {f1}", "{name} with {f1} and {f2}",
               "{wood} {name} in {region}", "{name} with {f1}, {f2} and {f3}"],
    }
    _CONTEXTS = {"de": ["Altbau", "Neubau", "Ferienhaus", "Mietwohnung", "Einfamilienhaus"],
                 "en": ["period property", "new build", "holiday flat", "family home"]}

    def __init__(self, seed: int = 17) -> None:
        self._rng = random.Random(seed)
        self._seen: set[str] = set()
        self._fallback = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for _ in range(100):
            phrase = self._draw()
            if phrase not in self._seen:
                self._seen.add(phrase)
                return phrase
        while True:  # the vocabulary is exhausted for practical purposes: number them
            self._fallback += 1
            phrase = f"{self._draw()} ({self._fallback})"
            if phrase not in self._seen:
                self._seen.add(phrase)
                return phrase

    def take(self, count: int) -> list[str]:
        return [next(self) for _ in range(count)]

    def _draw(self) -> str:
        rng = self._rng
        kind = KINDS[rng.choice(list(KINDS))]
        language = "en" if rng.random() < 1 / 5 else "de"
        features = kind.features[language]
        f1, f2, f3 = rng.sample(features, 3)
        shape = rng.choice(self._SHAPES[language])
        return shape.format(name=rng.choice(kind.names[language]), wood=rng.choice(WOODS[language]),
                            f1=f1, f2=f2, f3=f3, region=rng.choice(REGIONS),
                            context=rng.choice(self._CONTEXTS[language]))


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def cpu_model(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return None


def read_rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def machine_info() -> dict[str, Any]:
    try:
        model = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        model = None
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                    timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"cpu_count": os.cpu_count(), "cpus_usable": affinity, "cpu_model": model,
            "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else bool(status),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    projects: int = 10_000
    concurrency: int = 8
    probe_interval_s: float = 0.02
    single_searches: int = 500
    batches: int = 100
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
    seed: int = 11


# Where the service keeps its data and how it is reached: the bench decides these; every other
# HANDWERK_ setting (threads, batch sizes, model) passes through to the server it starts.
_LOCATION_SETTINGS = ("HANDWERK_DATA_DIR", "HANDWERK_DATABASE_URL", "HANDWERK_KAFKA_BOOTSTRAP_SERVERS",
                      "HANDWERK_INDEX_BACKEND", "HANDWERK_QDRANT_URL", "HANDWERK_QDRANT_PATH",
                      "HANDWERK_QDRANT_API_KEY", "HANDWERK_HOST", "HANDWERK_PORT",
                      "HANDWERK_METRICS_PORT", "HANDWERK_CRASH_POINT", "HANDWERK_APPLY_JOURNAL")

Log = Callable[[str], None]


class BenchError(RuntimeError):
    pass


class Server:
    """A `handwerk serve` child on a free port; its output goes to a log file."""

    def __init__(self, data: Path, log: Path, model_cache: Path) -> None:
        from handwerk.kafka import free_port

        self.data, self.log, self.port = data, log, free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in _LOCATION_SETTINGS}
        self.env.setdefault("HANDWERK_MODEL_CACHE_DIR", str(model_cache))  # the bench's ONNX file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 600) -> float:
        import httpx

        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handwerk", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < timeout_s:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise BenchError(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise BenchError(f"the server was not ready in {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _embedder() -> tuple[Any, Any]:
    """The service's embedder (same model, backend, threads, batch size) in this process."""
    from handwerk.embedding import Embedder, resolve_model
    from handwerk.settings import Settings

    settings = Settings()
    spec = resolve_model(None if settings.model_path is None else str(settings.model_path),
                         default_backend=settings.embedding_backend)
    cache = settings.model_cache_dir or Path.home() / ".cache" / "handwerk" / "models"
    embedder = Embedder.from_spec(spec, cache_dir=cache, threads=settings.embedding_threads,
                                  query_threads=settings.query_threads,
                                  batch_size=settings.embedding_batch_size)
    embedder.load()
    return embedder, settings


def embed_texts(embedder: Any, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, float]:
    """Document vectors in the pipeline's chunks, and the seconds it took (after a warm-up)."""
    embedder.encode(list(texts[:batch_size]) or ["warm-up"], "document")
    started = time.perf_counter()
    parts = [embedder.encode(list(texts[i:i + batch_size]), "document")
             for i in range(0, len(texts), batch_size)]
    elapsed = time.perf_counter() - started
    return (np.vstack(parts) if parts else np.zeros((0, embedder.dimension), np.float32)), elapsed


def all_vectors(embedder: Any, texts: Sequence[str], batch_size: int, store: Path | None,
                log: Log) -> tuple[np.ndarray, dict[str, Any]]:
    """Every text's vector. Texts a run embedded before are read from the vector cache in
    ``store`` (keyed by model and text, like the service's own), the rest are embedded now and
    saved there as they go, so an interrupted run loses little and 10,000 projects reuse what
    100,000 made (the demo projects of a seed are a prefix of a longer list)."""
    from handwerk.embedding import model_key, text_hash
    from handwerk.embedding.vector_cache import VectorCache

    key = model_key(embedder.model_name, embedder.dimension)
    hashes = [text_hash(t) for t in texts]
    matrix = np.zeros((len(texts), embedder.dimension), np.float32)
    cache = None if store is None else VectorCache(store / "vectors.sqlite")
    try:
        known = {} if cache is None else cache.get_arrays(key, hashes)
        missing = [i for i, h in enumerate(hashes) if h not in known]
        for i, h in enumerate(hashes):
            if h in known:
                matrix[i] = known[h]
        log(f"vectors of {len(texts) - len(missing):,} texts from {store}; "
            f"embedding {len(missing):,}")
        started = last = time.perf_counter()
        chunk = batch_size * 64
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            vectors = np.vstack([embedder.encode([texts[i] for i in part[j:j + batch_size]],
                                                 "document")
                                 for j in range(0, len(part), batch_size)])
            matrix[part] = vectors
            if cache is not None:
                cache.put_many(key, ((hashes[i], v) for i, v in zip(part, vectors, strict=True)))
            now = time.perf_counter()
            if now - last > 60:
                done = start + len(part)
                rate = done / (now - started)
                log(f"  {done:,}/{len(missing):,} texts, {rate:.1f}/s, "
                    f"about {(len(missing) - done) / rate / 60:.0f} min left")
                last = now
        seconds = time.perf_counter() - started
    finally:
        if cache is not None:
            cache.close()
    return matrix, {"reused": len(texts) - len(missing), "embedded": len(missing),
                    "seconds": round(seconds, 1)}


def preload_vector_cache(data: Path, embedder: Any, texts: Sequence[str],
                         vectors: np.ndarray) -> None:
    """Put these vectors where the service's consumer looks before it embeds (its vector
    cache in the data folder), so those projects load without embedding."""
    from handwerk.embedding import model_key, text_hash
    from handwerk.embedding.vector_cache import VectorCache
    from handwerk.settings import Settings

    path = Settings(data_dir=data).vector_cache_path
    with VectorCache(path) as cache:
        cache.put_many(model_key(embedder.model_name, embedder.dimension),
                       ((text_hash(t), v) for t, v in zip(texts, vectors, strict=True)))


class _Client:
    def __init__(self, http: Any) -> None:
        self.http = http
        self.timings: list[dict[str, float]] = []

    async def request(self, method: str, path: str, **kw: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        response = await self.http.request(method, path, **kw)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed, response

    async def find(self, query: str, *, top_k: int = 10, threshold: float = 0.3,
                   timing: bool = False) -> tuple[float, list[str]]:
        ms, response = await self.request("POST", "/api/v1/similarity/find-similar",
                                          json={"query": query, "top_k": top_k,
                                                "threshold": threshold})
        if timing:
            self.timings.append(parse_server_timing(response.headers.get("server-timing")))
        return ms, [r["id"] for r in response.json()["results"]]

    async def points(self) -> int:
        _, response = await self.request("GET", "/api/v1/similarity/stats")
        return int(response.json()["points_count"])


async def _write_all(client: _Client, projects: Sequence[dict[str, Any]],
                     concurrency: int) -> list[str]:
    """POST every project with ``concurrency`` writers; their ids, in order."""
    ids: list[str | None] = [None] * len(projects)
    order = iter(range(len(projects)))

    async def writer() -> None:
        for i in order:
            _, response = await client.request("POST", "/api/v1/projects/", json=projects[i])
            ids[i] = response.json()["id"]

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return [str(i) for i in ids]


async def _until_points(client: _Client, points: int, started: float, timeout_s: float) -> None:
    while await client.points() < points:
        if time.perf_counter() - started > timeout_s:
            raise BenchError(f"the index did not reach {points} points within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def _ingest(client: _Client, projects: list[dict[str, Any]], queries: QueryGenerator,
                  config: BenchConfig, raw_rate: float | None) -> tuple[dict[str, Any], list[str]]:
    """The measured part (pipeline embeds, probe runs), then the bulk part (vectors reused)."""
    measured, bulk = projects[:config.measured_ingest], projects[config.measured_ingest:]
    done = asyncio.Event()
    during: list[float] = []

    async def prober() -> None:
        while not done.is_set():
            during.append((await client.find(next(queries)))[0])
            await asyncio.sleep(config.probe_interval_s)

    base = await client.points()
    probe = asyncio.create_task(prober())
    started = time.perf_counter()
    try:
        ids = await _write_all(client, measured, config.concurrency)
        written = time.perf_counter() - started
        await _until_points(client, base + len(measured), started, config.ingest_timeout_s)
        total = time.perf_counter() - started
    finally:
        done.set()
        await probe
    rate = len(measured) / total
    result: dict[str, Any] = {
        "projects": len(measured), "api_write_rate_per_s": round(len(measured) / written, 1),
        "seconds_until_all_searchable": round(total, 2), "pipeline_rate_per_s": round(rate, 1),
        "raw_embed_rate_per_s": None if raw_rate is None else round(raw_rate, 1),
        "pipeline_vs_raw": None if not raw_rate else round(rate / raw_rate, 3)}
    part: dict[str, Any] = {"ingest": result, "during_ingest": latency_summary(during)}
    if bulk:
        started = time.perf_counter()
        ids += await _write_all(client, bulk, config.concurrency)
        written = time.perf_counter() - started
        await _until_points(client, base + len(projects), started, config.ingest_timeout_s)
        total = time.perf_counter() - started
        part["bulk_load"] = {"projects": len(bulk), "seconds": round(total, 1),
                             "api_write_rate_per_s": round(len(bulk) / written, 1),
                             "rate_per_s": round(len(bulk) / total, 1),
                             "note": "vectors reused from the preloaded vector cache"}
    return part, ids


async def _until_in_graph(client: _Client, unindexed_allowed: int,
                          timeout_s: float) -> dict[str, Any]:
    """Wait (bounded) until at most ``unindexed_allowed`` points are outside the HNSW graph:
    the state the service's own compaction keeps a serving index in."""
    started = time.perf_counter()
    while True:
        _, response = await client.request("GET", "/api/v1/similarity/stats")
        stats = response.json()
        points, indexed = int(stats["points_count"]), int(stats["indexed_vectors_count"])
        if points - indexed <= unindexed_allowed or time.perf_counter() - started > timeout_s:
            return {"seconds": round(time.perf_counter() - started, 1), "points": points,
                    "in_graph": indexed, "reached": points - indexed <= unindexed_allowed}
        await asyncio.sleep(1.0)


async def _quality(client: _Client, embedder: Any, matrix: np.ndarray, ids: list[str] | None,
                   queries: list[str]) -> dict[str, Any]:
    """Service vs the old design's exact search on the same queries (one at a time)."""
    service, baseline, search_only, recalls = [], [], [], []
    _, response = await client.request("GET", "/api/v1/similarity/stats")
    stats = response.json()
    for query in queries:
        ms, found = await client.find(query, top_k=10, threshold=0.0)
        service.append(ms)
        started = time.perf_counter()
        vector = embedder.encode([query], "query")[0]
        embedded = time.perf_counter()
        top = brute_force_top_k(matrix, vector, 10)
        finished = time.perf_counter()
        baseline.append((finished - started) * 1000)
        search_only.append((finished - embedded) * 1000)
        if ids is not None:
            recalls.append(recall_at_k(found, [ids[i] for i in top], 10))
    service_p50, baseline_p50 = percentile(service, 50), percentile(baseline, 50)
    points, indexed = int(stats["points_count"]), int(stats["indexed_vectors_count"])
    return {"queries": len(queries), "vectors": int(matrix.shape[0]),
            "index_points": points, "index_hnsw_points": indexed,
            "hnsw_share": round(indexed / points, 3) if points else None,
            "recall_at_10": round(float(np.mean(recalls)), 4) if recalls else None,
            "recall_min": round(min(recalls), 4) if recalls else None,
            "service_p50_ms": round(service_p50, 2),
            "service_p99_ms": round(percentile(service, 99), 2),
            "baseline_p50_ms": round(baseline_p50, 2),
            "baseline_p99_ms": round(percentile(baseline, 99), 2),
            "baseline_search_p50_ms": round(percentile(search_only, 50), 3),
            "speedup": round(baseline_p50 / service_p50, 2) if service_p50 > 0 else None}


async def _steady(client: _Client, queries: QueryGenerator, config: BenchConfig,
                  *, rng: random.Random) -> dict[str, Any]:
    for _ in range(10):  # warm-up
        await client.find(next(queries))
    client.timings.clear()
    singles = [(await client.find(next(queries), timing=True))[0]
               for _ in range(config.single_searches)]
    reported = [t for t in client.timings if t]
    batches = []
    for _ in range(config.batches):
        ms, _ = await client.request("POST", "/api/v1/similarity/batch-similar",
                                     json={"queries": queries.take(5), "top_k": 10})
        batches.append(ms)
    _, response = await client.request("GET", "/api/v1/projects", params={"limit": 1})
    total = int(response.json()["total"])
    first, deep, keyset = [], [], []
    deepest = max(0, total - 50)
    # a cursor near the end: walk there once with large pages, then time the deep keyset page
    cursor, walked = None, 0
    while walked < deepest:
        _, page = await client.request("GET", "/api/v1/projects",
                                       params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        body = page.json()
        walked += len(body["items"])
        if body.get("next_cursor") is None:
            break
        cursor = body["next_cursor"]
    for _ in range(config.list_requests):
        if cursor is not None:
            keyset.append((await client.request("GET", "/api/v1/projects",
                                                params={"limit": 50, "cursor": cursor}))[0])
        first.append((await client.request("GET", "/api/v1/projects",
                                           params={"limit": 50, "offset": 0}))[0])
        offset = max(0, deepest - rng.randrange(0, max(1, total // 10)))
        deep.append((await client.request("GET", "/api/v1/projects",
                                          params={"limit": 50, "offset": offset}))[0])
    return {"single": latency_summary(singles), "batch5": latency_summary(batches),
            "list_first": latency_summary(first),
            "list_deep": latency_summary(deep) | {"offset_at_least": max(0, deepest - total // 10),
                                                  "total": total},
            "list_cursor": latency_summary(keyset),
            "stages": stage_medians(reported) | {"responses_with_header": len(reported)}}


async def _throughput(client: _Client, queries: QueryGenerator, config: BenchConfig) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + config.throughput_seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                latencies.append((await client.find(next(queries)))[0])
            except httpx.HTTPStatusError as e:
                key = str(e.response.status_code)
                errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(config.throughput_clients)))
    elapsed = time.perf_counter() - started
    return {"throughput": latency_summary(latencies) | {
        "clients": config.throughput_clients, "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1), "errors": errors}}


async def _freshness(client: _Client, config: BenchConfig) -> dict[str, Any]:
    """Open loop at ``write_rate``: each write is a POST that waits (server-side) until the
    index holds it, so its round trip is write -> searchable as a client sees it."""
    from tooling.demo import demo_projects

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


def _memory(server: Server) -> dict[str, Any]:
    rss = read_rss_kib(server.pid)
    broker = sum(read_rss_kib(c).get("VmRSS", 0) for c in _children(server.pid))
    return {"serve_rss_mib": round(rss["VmRSS"] / 1024, 1) if "VmRSS" in rss else None,
            "serve_peak_rss_mib": round(rss["VmHWM"] / 1024, 1) if "VmHWM" in rss else None,
            "children_rss_mib": round(broker / 1024, 1)}


def run_benchmark(config: BenchConfig, log: Log = print) -> dict[str, Any]:
    """Run every phase; returns the JSON document (machine, config, results, rows, tally)."""
    import httpx

    from handwerk.embedding import project_text
    from tooling.demo import demo_projects

    machine = machine_info()
    projects = demo_projects(config.projects, seed=config.seed)
    texts = [project_text(p) for p in projects]
    log(f"loading the embedder; {len(texts):,} project texts")
    embedder, settings = _embedder()
    store = None if config.vector_store is None else Path(config.vector_store)
    matrix, full_pass = all_vectors(embedder, texts, settings.embedding_batch_size, store, log)
    if config.prepare_only:
        embedder.close()
        return {"benchmark": "handwerk bench", "machine": machine, "config": asdict(config),
                "prepared": full_pass, "results": {}, "rows": [], "tally": tally([])}
    measured = min(config.measured_ingest, len(texts))
    sample = random.Random(config.seed).sample(texts[:measured], min(config.raw_sample, measured))
    log(f"raw embedder rate: embedding {len(sample):,} of the texts the pipeline will embed, "
        f"in this process (threads={settings.embedding_threads}, "
        f"batch={settings.embedding_batch_size})")
    _, seconds = embed_texts(embedder, sample, settings.embedding_batch_size)
    raw_rate = len(sample) / seconds if seconds > 0 else None
    log(f"  {raw_rate or 0:.1f} texts/s")
    queries = QueryGenerator(config.seed)
    quality_queries = queries.take(config.quality_queries)  # fixed for a seed, never reused
    results: dict[str, Any] = {"vectors": full_pass}
    with tempfile.TemporaryDirectory(prefix="handwerk-bench-") as folder:
        cache = settings.model_cache_dir or Path.home() / ".cache" / "handwerk" / "models"
        server = Server(Path(folder) / "data", Path(folder) / "serve.log", cache)
        if measured < len(texts):
            log(f"preloading the service's vector cache with the vectors of the other "
                f"{len(texts) - measured:,} projects")
            preload_vector_cache(server.data, embedder, texts[measured:], matrix[measured:])
        log("starting handwerk serve")
        ready = server.start()
        log(f"  ready in {ready:.1f} s on {server.url} (pid {server.pid})")

        async def main() -> None:
            limits = httpx.Limits(max_connections=max(config.concurrency,
                                                      config.throughput_clients) + 4)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
                client = _Client(http)
                log(f"ingest: {measured:,} projects embedded by the pipeline, "
                    f"{len(projects) - measured:,} with reused vectors; {config.concurrency} "
                    "writers, find-similar probe meanwhile")
                part, ids = await _ingest(client, projects, queries, config, raw_rate)
                results.update(part)
                log(f"  {part['ingest']['pipeline_rate_per_s']}/s until all searchable"
                    + (f"; bulk {part['bulk_load']['rate_per_s']}/s" if "bulk_load" in part
                       else ""))
                log("waiting until compaction has the points in the HNSW graph")
                results["hnsw_wait"] = await _until_in_graph(
                    client, settings.compaction_unindexed_points - 1, config.hnsw_wait_s)
                log(f"  {results['hnsw_wait']}")
                log(f"quality: {len(quality_queries)} queries vs exact search over "
                    f"{matrix.shape[0]:,} vectors")
                results["quality"] = await _quality(client, embedder, matrix, ids,
                                                    quality_queries)
                log(f"1 client: {config.single_searches} find-similar, {config.batches} "
                    f"batch-similar, {config.list_requests}x2 list")
                results.update(await _steady(client, queries, config,
                                             rng=random.Random(config.seed)))
                log(f"throughput: {config.throughput_clients} clients for "
                    f"{config.throughput_seconds:.0f} s")
                results.update(await _throughput(client, queries, config))
                log(f"freshness: {config.writes} writes at {config.write_rate:g}/s")
                results.update(await _freshness(client, config))
                _, response = await client.request("GET", "/api/v1/similarity/stats")
                results["index"] = response.json()

        try:
            asyncio.run(main())
            results["memory"] = _memory(server)
            results["server_startup_s"] = round(ready, 1)
            if config.restart:
                server.stop()
                log("restart (HNSW built before readiness), then find-similar again")
                restart: dict[str, Any] = {"ready_s": round(server.start(), 1)}

                async def again() -> None:
                    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                        client = _Client(http)
                        for _ in range(10):
                            await client.find(next(queries))
                        restart["single"] = latency_summary(
                            [(await client.find(next(queries)))[0]
                             for _ in range(config.single_searches)])
                        _, response = await client.request("GET", "/api/v1/similarity/stats")
                        restart["index"] = response.json()

                asyncio.run(again())
                results["restart"] = restart
        except Exception as e:
            raise BenchError(f"{type(e).__name__}: {e}\nlast lines of the server log:\n"
                             f"{server.tail()}") from e
        finally:
            server.stop()
            embedder.close()
    results["machine_after"] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    rows = evaluate(results)
    return {"benchmark": "handwerk bench", "machine": machine, "config": asdict(config),
            "embedder": {"model": embedder.model_name, "backend": embedder.spec.backend,
                         "threads": settings.embedding_threads,
                         "query_threads": settings.query_threads,
                         "batch_size": settings.embedding_batch_size,
                         "raw_rate_sample": len(sample), "measured_ingest": measured},
            "results": results, "rows": rows, "tally": tally(rows)}


def render(document: Mapping[str, Any]) -> Any:
    """The rich table of a document from ``run_benchmark``."""
    from rich.table import Table

    machine = document["machine"]
    config = document["config"]
    caption = (f"{machine.get('cpu_model') or '?'}, {machine.get('cpus_usable')}/"
               f"{machine.get('cpu_count')} cores usable, Python {machine.get('python')}, commit "
               f"{(machine.get('git_commit') or '?')[:10]}{' (dirty)' if machine.get('git_dirty') else ''}, "
               f"load {machine.get('load_average')}; {config['projects']:,} projects")
    tally_ = document["tally"]
    table = Table(title=f"handwerk bench: {tally_['met']} met, {tally_['missed']} missed, "
                        f"{tally_['n/a']} n/a", caption=caption)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("")
    styles = {"met": "[green]met[/green]", "missed": "[red]missed[/red]", "n/a": "[yellow]n/a[/yellow]"}
    for row in document["rows"]:
        label = row["label"].replace("N clients", f"{config['throughput_clients']} clients")
        table.add_row(label, row["shown"], row["target"] or "",
                      styles.get(row["verdict"], "") if row["verdict"] else "")
    return table
