"""The order of a soak: start serve on its own data folder and port (embedded defaults: its own
local broker, SQLite, Qdrant Edge, bundled model), seed, then run the open-loop load for the
asked duration while a sampler reads every ``sample_interval_s``; on schedule, a compaction, a
reindex from the topic and one SIGKILL of serve followed by a restart on the same data folder.
At the end: wait until the index has caught up, stop serve, judge every write with the chaos
checker, reduce the series to slopes and a verdict.

The reindex from the topic comes before the SIGKILL on purpose: the local broker is
memory-only and dies with serve, so after the restart the topic no longer holds every project
and the completeness gate would (rightly) refuse a reindex from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from handwerk.kafka import free_port
from tests.chaos.checker import check
from tests.chaos.harness import History, IndexSampler, wait_converged
from tests.integration.server import Server
from tooling.soak import probes
from tooling.soak.analysis import Event, Tolerances, analyse, percentile
from tooling.soak.load import WRITE_MIX, Pacer, Searcher, Window, Writer

FINISHED = ("active", "failed", "refused")


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 60.0
    write_rate: float = 20.0
    search_rate: float = 20.0
    seed_projects: int = 1000
    sample_interval_s: float = 10.0
    probe_every: int = 4  # every 4th write waits until indexed: write -> searchable
    compaction_at: float = 0.20  # share of the duration
    reindex_at: float = 0.35
    kill_at: float = 0.50
    warmup_share: float = 0.10
    min_warmup_s: float = 30.0
    settle_s: float = 60.0  # after a job, before its segment is judged
    index_sample_interval_s: float = 30.0  # the checker's index sampler (lists every project)
    converge_timeout_s: float = 600.0
    seed: int = 1
    out_dir: Path = Path("bench-results")
    workdir: Path | None = None  # default: a temporary folder, removed at the end
    tolerances: Tolerances = field(default_factory=Tolerances)
    # Stores bounded by a time window grow for as long as the window: tombstones for the
    # horizon (7 days by default), a compaction's replaced generation for the grace period
    # (1 h). Shorter than the run, they reach their bound within it, so the slopes show
    # whether anything else grows; None: serve's default.
    tombstone_horizon_s: float | None = 600.0
    generation_grace_s: float | None = 600.0

    @property
    def duration_s(self) -> float:
        return self.minutes * 60

    @property
    def warmup_s(self) -> float:
        return max(self.min_warmup_s, self.warmup_share * self.duration_s)


def serve_env(data_dir: Path, config: SoakConfig) -> dict[str, str]:
    """Embedded defaults: no HANDWERK_ setting from the caller's environment, except where the
    ONNX export of the model is cached (location only; it keeps the one-time export out of the
    run and out of the data folder's sizes) and the two time windows of ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env["HANDWERK_DATA_DIR"] = str(data_dir)
    cache = os.environ.get("HANDWERK_MODEL_CACHE_DIR") or str(Path.home() / ".cache" / "handwerk")
    env["HANDWERK_MODEL_CACHE_DIR"] = cache
    if config.tombstone_horizon_s is not None:
        env["HANDWERK_TOMBSTONE_HORIZON_S"] = str(config.tombstone_horizon_s)
    if config.generation_grace_s is not None:
        env["HANDWERK_GENERATION_GRACE_S"] = str(config.generation_grace_s)
    return env


class Soak:
    def __init__(self, config: SoakConfig, workdir: Path, log: Any) -> None:
        self.config, self.workdir, self.log = config, workdir, log
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.env = serve_env(self.data_dir, config)
        self.server: Server | None = None
        self.history = History(tombstone_horizon_s=config.tombstone_horizon_s)
        self.window = Window()
        self.samples: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.jobs: dict[str, dict[str, Any] | None] = {"compaction": None, "reindex": None}
        self.foreign_jobs: dict[tuple[str, str], float] = {}  # jobs serve started by itself
        self._our_jobs: set[tuple[str, str]] = set()
        self._job_running = False
        self.restarted = False
        self.index_name = "handwerk_projects"
        self.t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _current(self) -> Window:
        return self.window

    # ------------------------------------------------------------------ serve
    def start_server(self) -> Server:
        server = Server(self.env, self.workdir / "serve.log", port=self.port)
        server.start()
        self.server = server
        return server

    async def wait_ready(self) -> None:
        assert self.server is not None
        await asyncio.to_thread(self.server.wait_ready, 600)

    async def kill_and_restart(self) -> None:
        assert self.server is not None and self.server.process is not None
        root = self.server.process.pid
        children = probes.descendants(root)[1:]
        started = self.now()
        self.log(f"[{started:7.1f}s] SIGKILL serve (pid {root}; children {children})")
        self.server.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.server.wait, 30)
        deadline = time.monotonic() + 30
        while any(map(_alive, children)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the local broker dies with serve (PR_SET_PDEATHSIG)
        self.start_server()
        await self.wait_ready()
        self.restarted = True
        self.events.append(Event("restart", started, self.now()))
        self.log(f"[{self.now():7.1f}s] serve ready again after {self.now() - started:.1f} s")

    # ------------------------------------------------------------------ admin jobs
    async def run_job(self, client: httpx.AsyncClient, name: str, source: str) -> None:
        """POST the job (once the one running lets go), then follow it to its end state."""
        started = self.now()
        self.log(f"[{started:7.1f}s] {name}: POST /api/v1/admin/reindex source={source}")
        self._job_running = True
        try:
            await self._follow_job(client, name, source, started)
        finally:
            self._job_running = False

    async def _follow_job(self, client: httpx.AsyncClient, name: str, source: str,
                          started: float) -> None:
        deadline = time.monotonic() + 300
        while True:
            try:
                response = await client.post("/api/v1/admin/reindex", json={"source": source})
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 202:
                break
            if time.monotonic() > deadline:
                self.jobs[name] = {"state": "not started",
                                   "answer": None if response is None else response.text}
                return
            await asyncio.sleep(1.0)
        job: dict[str, Any] = response.json()
        self._our_jobs.add(_job_key(job))
        while job.get("state") not in FINISHED and time.monotonic() < deadline + 1800:
            await asyncio.sleep(1.0)
            try:
                job = (await client.get("/api/v1/admin/reindex")).json()
            except (httpx.HTTPError, ValueError):
                continue
        self.jobs[name] = job
        self.events.append(Event(name, started, self.now()))
        self.log(f"[{self.now():7.1f}s] {name}: {job.get('state')} in {self.now() - started:.1f} s "
                 f"({job.get('generation')})")

    async def _watch_foreign_job(self, client: httpx.AsyncClient) -> None:
        """A compaction serve starts by itself is a discontinuity too: record it as one."""
        try:
            response = await client.get("/api/v1/admin/reindex", timeout=5)
        except httpx.HTTPError:
            return
        if response.status_code != 200:
            return
        job = response.json()
        key = _job_key(job)
        if self._job_running or key in self._our_jobs:
            return
        if job.get("state") not in FINISHED and key not in self.foreign_jobs:
            self.foreign_jobs[key] = self.now() - float(job.get("elapsed_s") or 0)
        elif job.get("state") in FINISHED and key in self.foreign_jobs:
            self.events.append(Event(f"auto-{job.get('kind')}", self.foreign_jobs.pop(key), self.now()))

    # ------------------------------------------------------------------ sampling
    async def sample(self, client: httpx.AsyncClient, interval: float) -> None:
        window, self.window = self.window, Window()
        stats = await probes.service_stats(client)
        if stats and stats.get("index_name"):
            self.index_name = str(stats["index_name"])
        root = self.server.process.pid if self.server and self.server.process else None
        lag = stats.get("consumer_lag") if stats else None
        sample: dict[str, Any] = {
            "t": round(self.now(), 2),
            "processes": await asyncio.to_thread(probes.processes, root) if root else {},
            "disk": await asyncio.to_thread(probes.disk, self.data_dir),
            "items": await asyncio.to_thread(probes.store_items, self.data_dir, stats),
            "search": _summary(window.search_ms, window.search_errors, interval),
            "write": _summary(window.write_ms, window.write_errors, interval),
            "searchable": {**_summary(window.searchable_ms, 0, interval),
                           "not_searchable_within_wait": window.not_searchable_in_time},
            "dropped": window.dropped,
            "lag": sum(lag.values()) if isinstance(lag, dict) else None,
            "outbox_backlog": stats.get("outbox_backlog") if stats else None,
            "points": stats.get("points_count") if stats else None,
            "tombstones": stats.get("tombstones_count") if stats else None,
            "indexed_vectors": stats.get("indexed_vectors_count") if stats else None,
            "generation": stats.get("generation") if stats else None,
            "indexer_state": stats.get("indexer_state") if stats else None,
        }
        self.samples.append(sample)
        await self._watch_foreign_job(client)

    async def sampler(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        interval = self.config.sample_interval_s
        next_at = time.monotonic() + interval
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
                break
            except TimeoutError:
                pass
            next_at += interval
            await self.sample(client, interval)
            last = self.samples[-1]
            self.log(f"[{last['t']:7.1f}s] serve {_fmt(last, 'processes', 'serve', 'rss_mb')} MB "
                     f"fds {_fmt(last, 'processes', 'serve', 'fds')} | search p50 "
                     f"{_fmt(last, 'search', 'p50')} p99 {_fmt(last, 'search', 'p99')} ms | "
                     f"searchable p50 {_fmt(last, 'searchable', 'p50')} ms | lag {last['lag']} "
                     f"backlog {last['outbox_backlog']} | points {last['points']}")

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        config = self.config
        started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.start_server()
        await self.wait_ready()
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            writer = Writer(client, self.history, self._current, seed=config.seed,
                            probe_every=config.probe_every)
            searcher = Searcher(client, self._current, seed=config.seed)
            self.log(f"seeding {config.seed_projects} projects")
            await writer.seed(config.seed_projects)
            await wait_converged(self.url, 600)
            self.window = Window()
            self.t0 = time.monotonic()
            stop = asyncio.Event()
            writes = Pacer(config.write_rate, writer.one, stop, self._current)
            searches = Pacer(config.search_rate, searcher.one, stop, self._current)
            index_sampler = IndexSampler(self.url, self.history,
                                         interval_s=config.index_sample_interval_s)
            sampler_stop = asyncio.Event()
            tasks = [asyncio.create_task(writes.run()), asyncio.create_task(searches.run()),
                     asyncio.create_task(index_sampler.run()),
                     asyncio.create_task(self.sampler(client, sampler_stop))]
            try:
                schedule = sorted([(config.compaction_at, "compaction"),
                                   (config.reindex_at, "reindex"), (config.kill_at, "kill")])
                for share, what in schedule:
                    await asyncio.sleep(max(0.0, share * config.duration_s - self.now()))
                    if what == "kill":
                        await self.kill_and_restart()
                    else:
                        await self.run_job(client, what, "compaction" if what == "compaction"
                                           else "topic")
                await asyncio.sleep(max(0.0, config.duration_s - self.now()))
                elapsed = self.now()
                stop.set()
                await asyncio.gather(tasks[0], tasks[1])
                await writes.drain(60)
                await searches.drain(10)
                self.log(f"[{self.now():7.1f}s] load stopped; waiting until the index caught up")
                try:
                    await wait_converged(self.url, config.converge_timeout_s)
                    self.history.converged = True
                except TimeoutError as e:
                    self.history.converge_error = str(e)
                converge_s = self.now() - elapsed
                index_sampler.stop.set()
                sampler_stop.set()
                await asyncio.gather(*tasks[2:])
                await self.sample(client, config.sample_interval_s)  # the end state, caught up
            except BaseException:
                stop.set()
                sampler_stop.set()
                index_sampler.stop.set()
                for task in tasks:
                    task.cancel()
                raise
            finally:
                if self.server is not None:
                    self.server.stop(60)
        # The serve SIGKILL took its memory-only local broker (its child) with it: for the
        # checker that is a broker restart too (a project created and deleted whose every
        # event was only in the lost log never reached the index, and rightly so).
        self.history.faults.update({"kill_server": 1, "restart_broker": 1})
        verdict = await check(self.data_dir, self.workdir / "no-journal.jsonl", self.history,
                              self.index_name)
        rates = {"write": {"asked": config.write_rate, "achieved": writes.started / elapsed},
                 "search": {"asked": config.search_rate, "achieved": searches.started / elapsed}}
        analysis = analyse(
            self.samples, self.events, warmup_s=config.warmup_s, settle_s=config.settle_s,
            tolerances=config.tolerances, rates=rates,
            jobs={k: (v or {}).get("state") for k, v in self.jobs.items()},
            restarted=self.restarted, checker_ok=verdict.ok,
            search_error_share=self._search_error_share())
        return {
            "started_at": started_at,
            "config": {f.name: str(getattr(config, f.name)) if isinstance(
                getattr(config, f.name), Path | None) else getattr(config, f.name)
                for f in dataclasses.fields(config) if f.name != "tolerances"},
            "tolerances": dataclasses.asdict(config.tolerances),
            "write_mix": dict(WRITE_MIX),
            "measures": {
                "search": "client round trip of POST /api/v1/similarity/find-similar (default "
                          "mode, top_k 5, distinct German queries), per sample window",
                "searchable": "client round trip of every probe_every-th write sent with "
                              "?wait_indexed=30: from sending it until the answer, which comes "
                              "when the index holds its version (the consumer wakes the request; "
                              "the answer's indexed_version confirms it); a write not indexed "
                              "within 30 s counts in not_searchable_within_wait, not in the "
                              "percentiles",
                "write": "client round trip of the other writes (wait_indexed=0): the ack",
                "disk": "bytes allocated (du) per top-level entry of the data folder; a store "
                        "is a SQLite file with its -wal and -shm",
                "lag": "sum over partitions of consumer_lag from GET /api/v1/similarity/stats",
            },
            "rates": rates, "dropped": {"write": writes.dropped, "search": searches.dropped},
            "elapsed_s": round(elapsed, 1), "converge_s": round(converge_s, 1),
            "jobs": self.jobs,
            "events": [{"name": e.name, "start": round(e.start, 1), "end": round(e.end, 1)}
                       for e in self.events],
            "writes": {"acknowledged": len(self.history.acknowledged),
                       "indeterminate": len(self.history.indeterminate),
                       "aborted": len(self.history.aborted)},
            "checker": {"ok": verdict.ok, "properties": verdict.properties,
                        "details": verdict.details},
            "analysis": analysis,
            "samples": self.samples,
        }

    def _search_error_share(self) -> float | None:
        """Failed searches over all searches, leaving out sample windows that overlap the
        restart (serve is down: every search fails, by design of the fault)."""
        restarts = [e for e in self.events if e.name == "restart"]
        errors = total = 0
        interval = self.config.sample_interval_s
        for sample in self.samples:
            t = sample["t"]
            if any(t - interval <= e.end and t >= e.start for e in restarts):
                continue
            errors += sample["search"]["errors"]
            total += sample["search"]["count"] + sample["search"]["errors"]
        return errors / total if total else None


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _job_key(job: dict[str, Any]) -> tuple[str, str]:
    return str(job.get("kind")), str(job.get("started_at"))


def _summary(values: list[float], errors: int, interval: float) -> dict[str, Any]:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {"count": len(values), "errors": errors, "per_s": round(len(values) / interval, 2),
            "p50": None if p50 is None else round(p50, 2),
            "p99": None if p99 is None else round(p99, 2),
            "max": round(max(values), 2) if values else None}


def _fmt(sample: dict[str, Any], *path: str) -> str:
    value: Any = sample
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return "-" if value is None else f"{value:.0f}"


async def run_soak(config: SoakConfig, log: Any = print) -> tuple[dict[str, Any], Path]:
    """Runs a soak; returns its document and the path of its JSON (the PNG and the serve log
    lie next to it)."""
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="handwerk-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        document = await Soak(config, workdir, log).run()
        return document, await asyncio.to_thread(_write_outputs, document, config.out_dir, workdir)
    finally:
        if config.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _write_outputs(document: dict[str, Any], out_dir: Path, workdir: Path) -> Path:
    """soak-<timestamp>.png, .json and .log (the serve log's last 2 MB) in ``out_dir``."""
    from tooling.soak.report import plot, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"soak-{document['started_at']}"
    document["files"] = {"json": f"{stem}.json", "png": f"{stem}.png", "log": f"{stem}.log"}
    plot(document, Path(f"{stem}.png"))
    write_json(document, Path(f"{stem}.json"))
    Path(f"{stem}.log").write_bytes((workdir / "serve.log").read_bytes()[-2_000_000:])
    return Path(f"{stem}.json")
