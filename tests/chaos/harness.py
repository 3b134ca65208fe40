"""Chaos run: real processes (serving process = API + consumer + embedded index, a separate
relay process, the local broker) killed, paused and restarted at random while a writer keeps
creating, changing and deleting projects through the API, and a sampler keeps reading the
version the index stores for every listed project. Everything is recorded; the checker
(checker.py) judges the history afterwards.

Two variants:
- default: reconcile every 3 s and at startup, faults include broker restarts (which wipe the
  memory-only log, so only reconcile can bring those events back). Judges the whole system.
- ``pipeline_only``: reconcile off (periodic and at startup), and only faults that keep the
  broker's log. Nothing may be lost inside outbox -> relay -> broker -> consumer -> index, so
  the checker also requires that reconcile re-emitted nothing.

Used by scripts/chaos.py (long runs) and tests/chaos/test_chaos.py (a short run in CI).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from handwerk.kafka import LocalBroker, free_port
from tests.integration.server import HandwerkProcess, Server, isolated_env
from tooling.demo import demo_project

SESSION_TIMEOUT_MS = 6000


@dataclass
class History:
    acknowledged: list[dict[str, Any]] = field(default_factory=list)  # op, id, version, t
    indeterminate: list[dict[str, Any]] = field(default_factory=list)  # request outcome unknown
    aborted: list[dict[str, Any]] = field(default_factory=list)  # rejected (4xx): never applied
    poison_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    last_fault_end: float = 0.0
    pipeline_only: bool = False
    # HANDWERK_TOMBSTONE_HORIZON_S the processes ran with, if set: a compaction may drop the
    # tombstone of a delete older than that, so such a project may end with no point at all
    tombstone_horizon_s: float | None = None
    # per project, the successive distinct versions the index stored, as sampled through the
    # API in real-time order (0: the project was listed but the index held no point for it)
    index_observed: dict[str, list[int]] = field(default_factory=dict)
    index_samples: int = 0
    converged: bool = False
    converge_error: str | None = None


class Cluster:
    def __init__(self, workdir: Path, *, reconcile_interval_s: float = 3.0,
                 pipeline_only: bool = False) -> None:
        self.workdir = workdir
        self.pipeline_only = pipeline_only
        self.broker = LocalBroker(free_port())
        self.journal = workdir / "apply-journal.jsonl"
        self.env = isolated_env(
            {"HANDWERK_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers},
            workdir / "data", "chaos",
            HANDWERK_APPLY_JOURNAL=str(self.journal),
            HANDWERK_RECONCILE_INTERVAL_S="0" if pipeline_only else str(reconcile_interval_s),
            HANDWERK_RECONCILE_ON_START="false" if pipeline_only else "true",
            # the checker counts reconcile's re-emits and each project's newest version in
            # the outbox: keep published rows for the whole run (default: purged after 1 h)
            HANDWERK_OUTBOX_RETENTION_S=str(7 * 24 * 3600),
            HANDWERK_KAFKA_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
            HANDWERK_RELAY_LEASE_TTL_S="3")
        self.port = free_port()
        self.server: Server | None = None
        self.relay: HandwerkProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_server(self) -> None:
        self.server = Server(self.env, self.workdir / "serve.log", "--no-relay", port=self.port).start()

    def start_relay(self) -> None:
        self.relay = HandwerkProcess(["relay"], self.env, self.workdir / "relay.log").start()

    def start(self) -> None:
        self.broker.start()
        self.start_relay()
        self.start_server()
        assert self.server is not None
        self.server.wait_ready()

    def stop(self) -> None:
        for process in (self.server, self.relay):
            if process is not None:
                process.stop()
        self.broker.stop()

    # faults -----------------------------------------------------------------------------
    async def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        await asyncio.sleep(random.uniform(0.0, 2.0))
        self.start_server()
        await asyncio.to_thread(self.server.wait_ready)

    async def pause_server(self) -> None:
        """SIGSTOP past the session timeout: the group evicts the member under it."""
        assert self.server is not None
        self.server.signal(signal.SIGSTOP)
        await asyncio.sleep(SESSION_TIMEOUT_MS / 1000 + random.uniform(1.0, 3.0))
        self.server.signal(signal.SIGCONT)

    async def kill_relay(self) -> None:
        assert self.relay is not None
        self.relay.kill()
        await asyncio.sleep(random.uniform(0.0, 2.0))
        self.start_relay()

    async def pause_relay(self) -> None:
        """SIGSTOP the relay, sometimes past its lease: publishing stalls, then resumes."""
        assert self.relay is not None
        self.relay.signal(signal.SIGSTOP)
        await asyncio.sleep(random.uniform(1.0, 6.0))
        self.relay.signal(signal.SIGCONT)

    async def restart_broker(self) -> None:
        """The memory-only broker loses topics, records and committed offsets."""
        self.broker.stop()
        await asyncio.sleep(random.uniform(0.2, 1.5))
        self.broker.start()

    @property
    def faults(self) -> list[str]:
        return PIPELINE_FAULTS if self.pipeline_only else FAULTS


FAULTS = ["kill_server", "pause_server", "kill_relay", "restart_broker"]
# Faults that keep the broker's log: SIGKILL/SIGSTOP of the serving process and of the relay.
# The serving process IS the consumer: the embedded index belongs to exactly one process
# (Qdrant Edge, one process per shard), so a separate consumer process is not possible here and
# "kill/pause the consumer" is kill_server/pause_server (a consumer group member killed or
# frozen past the session timeout). A broker restart wipes the memory-only log, which only
# reconcile can repair, so it stays in the variant with reconcile on.
PIPELINE_FAULTS = ["kill_server", "pause_server", "kill_relay", "pause_relay"]


class Writer:
    """Creates, changes and deletes projects through the API as fast as it is answered, or at
    most ``rate`` requests per second over all workers (None: no limit)."""

    def __init__(self, url: str, history: History, *, seed: int, rate: float | None = None) -> None:
        self.url = url
        self.history = history
        self.rng = random.Random(seed)
        self.live: dict[str, dict[str, Any]] = {}
        self.stop = asyncio.Event()
        self.rate = rate
        self._next_slot = 0.0

    async def _pace(self) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        slot = self._next_slot = max(now, self._next_slot) + 1.0 / self.rate
        await asyncio.sleep(slot - now)

    def _record(self, kind: str, op: str, **fields: Any) -> None:
        getattr(self.history, kind).append({"op": op, "t": time.time(), **fields})

    async def _one(self, client: httpx.AsyncClient) -> None:
        roll = self.rng.random()
        ids = list(self.live)
        if roll < 0.4 or not ids:
            op, method, path = "create", "POST", "/api/v1/projects/"
            body, pid = demo_project(self.rng), None
        elif roll < 0.6:
            pid = self.rng.choice(ids)
            op, method, path = "update_text", "PUT", f"/api/v1/projects/{pid}"
            body = {**self.live[pid], "description": demo_project(self.rng)["description"]}
        elif roll < 0.8:
            pid = self.rng.choice(ids)
            op, method, path = "update_price", "PUT", f"/api/v1/projects/{pid}"
            body = {**self.live[pid], "final_price": round(self.rng.uniform(1_000, 90_000), 2)}
        elif roll < 0.92:
            pid = self.rng.choice(ids)
            op, method, path, body = "delete", "DELETE", f"/api/v1/projects/{pid}", None
        else:
            op, method, path, pid = "invalid", "POST", "/api/v1/projects/", None
            body = {**demo_project(self.rng), "name": f"ABORTED-{uuid.uuid4()}", "complexity": 9}
        try:
            response = await client.request(method, path, json=body)
        except httpx.HTTPError as e:
            self._record("indeterminate", op, id=pid, error=type(e).__name__)
            await asyncio.sleep(0.05)
            return
        if response.status_code >= 500:
            self._record("indeterminate", op, id=pid, status=response.status_code)
        elif response.status_code >= 400:
            self._record("aborted", op, id=pid, status=response.status_code)
            if response.status_code == 404 and pid:
                self.live.pop(pid, None)
        else:
            result = response.json()
            self._record("acknowledged", op, id=result["id"], version=result["version"])
            if op == "delete":
                self.live.pop(result["id"], None)
            else:
                self.live[result["id"]] = {k: result[k] for k in body}  # type: ignore[union-attr]

    async def run(self, concurrency: int = 4) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            async def worker() -> None:
                while not self.stop.is_set():
                    await self._pace()
                    await self._one(client)
            await asyncio.gather(*(worker() for _ in range(concurrency)))


class IndexSampler:
    """Reads the version the index stores for every listed project, pass after pass, through
    `GET /api/v1/projects` (`indexed_version`), and keeps each project's successive distinct
    values in real-time order: one request at a time, so a later sample was read later."""

    def __init__(self, url: str, history: History, *, interval_s: float = 1.0) -> None:
        self.url = url
        self.history = history
        self.interval_s = interval_s
        self.stop = asyncio.Event()

    def _observe(self, pid: str, version: int | None) -> None:
        seen = self.history.index_observed.setdefault(pid, [])
        value = version or 0
        if not seen or seen[-1] != value:
            seen.append(value)
        self.history.index_samples += 1

    async def _one_pass(self, client: httpx.AsyncClient) -> None:
        offset = 0
        while not self.stop.is_set():
            page = (await client.get("/api/v1/projects",
                                     params={"limit": 500, "offset": offset})).raise_for_status().json()
            for item in page["items"]:
                self._observe(item["id"], item["indexed_version"])
            offset += 500
            if offset >= page["total"]:
                return

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while not self.stop.is_set():
                try:
                    await self._one_pass(client)
                except (httpx.HTTPError, KeyError, json.JSONDecodeError):
                    pass  # the server is down or paused: no sample
                try:
                    await asyncio.wait_for(self.stop.wait(), self.interval_s)
                except TimeoutError:
                    pass


async def send_poison(bootstrap: str, topic: str) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=3000)
    try:
        await asyncio.wait_for(producer.start(), 5)
        key = str(uuid.uuid4()).encode()
        await asyncio.wait_for(producer.send_and_wait(topic, b'{"specversion":"1.0","bad":', key=key), 5)
        return True
    except Exception:
        return False
    finally:
        await producer.stop()


async def wait_converged(url: str, timeout: float, *, stall_s: float = 60.0) -> float:
    """Until every project the API lists is indexed at its version and nothing else is live.

    A backlog is not a loss: while the gap (projects behind + live-count difference) keeps
    shrinking, wait up to ``timeout``; give up early once it has not shrunk for ``stall_s``
    (lost events never arrive, so the gap stops moving)."""
    started = last_progress = time.monotonic()
    best: int | None = None
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() - started < timeout:
            try:
                total, behind, offset = 0, 0, 0
                while True:
                    page = (await client.get("/api/v1/projects",
                                             params={"limit": 500, "offset": offset})).json()
                    total = page["total"]
                    behind += sum(1 for p in page["items"] if p["indexed_version"] != p["version"])
                    offset += 500
                    if offset >= total:
                        break
                live = (await client.get("/api/v1/similarity/stats")).json()["points_count"]
                if behind == 0 and live == total:
                    return time.monotonic() - started
                gap = behind + abs(live - total)
                if best is None or gap < best:
                    best, last_progress = gap, time.monotonic()
            except (httpx.HTTPError, KeyError, json.JSONDecodeError):
                pass
            if time.monotonic() - last_progress > stall_s:
                raise TimeoutError(f"no progress for {stall_s}s ({best} projects behind)")
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no convergence within {timeout}s ({best} projects behind)")


async def chaos_run(workdir: Path, *, faults: int, min_writes: int, seed: int,
                    fault_gap_s: tuple[float, float] = (2.0, 6.0),
                    converge_timeout_s: float = 180.0,
                    pipeline_only: bool = False,
                    write_rate: float | None = None) -> tuple[Cluster, History, float | None]:
    """Returns the cluster (still running: the caller stops it), the history, and the seconds
    from the end of the last fault to convergence, or None if it did not converge (no progress
    for a minute, or ``converge_timeout_s`` passed; the checker then says what is missing).
    ``write_rate`` caps the writer's requests per second (None: as fast as answered)."""
    rng = random.Random(seed)
    cluster = Cluster(workdir, pipeline_only=pipeline_only)
    history = History(pipeline_only=pipeline_only)
    cluster.start()
    writer = Writer(cluster.url, history, seed=seed, rate=write_rate)
    sampler = IndexSampler(cluster.url, history)
    writing = asyncio.create_task(writer.run())
    sampling = asyncio.create_task(sampler.run())
    try:
        done = 0
        while done < faults or len(history.acknowledged) < min_writes:
            await asyncio.sleep(rng.uniform(*fault_gap_s))
            if done < faults:
                fault = rng.choice(cluster.faults)
                await getattr(cluster, fault)()
                history.faults[fault] += 1
                history.last_fault_end = time.time()
                done += 1
            if rng.random() < 0.3 and await send_poison(cluster.broker.bootstrap_servers,
                                                        cluster.env["HANDWERK_KAFKA_TOPIC"]):
                history.poison_sent += 1
        writer.stop.set()
        await writing
        assert cluster.server is not None
        await asyncio.to_thread(cluster.server.wait_ready)
        try:
            converge: float | None = await wait_converged(cluster.url, converge_timeout_s)
            history.converged = True
        except TimeoutError as e:
            history.converge_error = str(e)
            converge = None
        sampler.stop.set()
        await sampling
        if converge is not None and history.faults:
            converge = time.time() - history.last_fault_end
        return cluster, history, converge
    except BaseException:
        writer.stop.set()
        sampler.stop.set()
        writing.cancel()
        sampling.cancel()
        cluster.stop()
        raise
