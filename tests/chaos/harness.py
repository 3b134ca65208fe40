"""Chaos run: real processes (serving process = API + consumer + embedded index, a separate
relay process, the local broker) killed, paused and restarted at random while a writer keeps
creating, changing and deleting projects through the API. Everything is recorded; the
checker (checker.py) judges the history afterwards.

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

from handwerk.demo import demo_project
from handwerk.kafka import LocalBroker, free_port
from tests.integration.server import HandwerkProcess, Server, isolated_env

SESSION_TIMEOUT_MS = 6000


@dataclass
class History:
    acknowledged: list[dict[str, Any]] = field(default_factory=list)  # op, id, version, t
    indeterminate: list[dict[str, Any]] = field(default_factory=list)  # request outcome unknown
    aborted: list[dict[str, Any]] = field(default_factory=list)  # rejected (4xx): never applied
    poison_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    last_fault_end: float = 0.0


class Cluster:
    def __init__(self, workdir: Path, *, reconcile_interval_s: float = 3.0) -> None:
        self.workdir = workdir
        self.broker = LocalBroker(free_port())
        self.journal = workdir / "apply-journal.jsonl"
        self.env = isolated_env(
            {"HANDWERK_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers},
            workdir / "data", "chaos",
            HANDWERK_APPLY_JOURNAL=str(self.journal),
            HANDWERK_RECONCILE_INTERVAL_S=str(reconcile_interval_s),
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

    async def restart_broker(self) -> None:
        """The memory-only broker loses topics, records and committed offsets."""
        self.broker.stop()
        await asyncio.sleep(random.uniform(0.2, 1.5))
        self.broker.start()


FAULTS = ["kill_server", "pause_server", "kill_relay", "restart_broker"]


class Writer:
    """Creates, changes and deletes projects through the API as fast as it is answered."""

    def __init__(self, url: str, history: History, *, seed: int) -> None:
        self.url = url
        self.history = history
        self.rng = random.Random(seed)
        self.live: dict[str, dict[str, Any]] = {}
        self.stop = asyncio.Event()

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
                    await self._one(client)
            await asyncio.gather(*(worker() for _ in range(concurrency)))


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


async def wait_converged(url: str, timeout: float) -> float:
    """Until every project the API lists is indexed at its version and nothing else is live."""
    started = time.monotonic()
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
            except (httpx.HTTPError, KeyError, json.JSONDecodeError):
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no convergence within {timeout}s")


async def chaos_run(workdir: Path, *, faults: int, min_writes: int, seed: int,
                    fault_gap_s: tuple[float, float] = (2.0, 6.0),
                    converge_timeout_s: float = 180.0) -> tuple[Cluster, History, float]:
    rng = random.Random(seed)
    cluster = Cluster(workdir)
    history = History()
    cluster.start()
    writer = Writer(cluster.url, history, seed=seed)
    writing = asyncio.create_task(writer.run())
    try:
        done = 0
        while done < faults or len(history.acknowledged) < min_writes:
            await asyncio.sleep(rng.uniform(*fault_gap_s))
            if done < faults:
                fault = rng.choice(FAULTS)
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
        converge = await wait_converged(cluster.url, converge_timeout_s)
        converge_after_last_fault = time.time() - history.last_fault_end if history.faults else converge
        return cluster, history, converge_after_last_fault
    except BaseException:
        writer.stop.set()
        writing.cancel()
        cluster.stop()
        raise
