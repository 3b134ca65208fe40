"""Open-loop load: writes and searches started on a fixed schedule, whatever the answers take.

A closed loop (send, wait, send) slows down with the server and hides a drift in the very
latency it measures; here request ``i`` starts at ``t0 + i / rate``. A request that would
exceed ``max_in_flight`` is not sent and is counted as ``dropped`` (the achieved rate then
shows it).

Every write is recorded in the chaos harness's ``History`` (acknowledged / indeterminate /
aborted), which ``tests.chaos.checker.check`` judges at the end.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.harness import History
from tooling.demo import KINDS, REGIONS, WOODS, demo_project

# The write mix: as many creates as deletes, so the live set stays about the seeded size and
# disk growth has to be explained by what the stores keep (tombstones, outbox retention).
WRITE_MIX = (("create", 0.20), ("update_text", 0.35), ("update_price", 0.25), ("delete", 0.20))
WAIT_INDEXED_S = 30
"""A probe write waits (server-side) up to this long for the index to hold it."""


@dataclass
class Window:
    """What finished since the last sample (the sampler swaps it for an empty one)."""

    search_ms: list[float] = field(default_factory=list)
    search_errors: int = 0
    write_ms: list[float] = field(default_factory=list)
    write_errors: int = 0
    searchable_ms: list[float] = field(default_factory=list)  # probe writes, send -> searchable
    not_searchable_in_time: int = 0
    dropped: int = 0


class Pacer:
    """Starts ``one()`` ``rate`` times a second until ``stop`` is set (open loop)."""

    def __init__(self, rate: float, one: Callable[[int], Coroutine[Any, Any, None]], stop: asyncio.Event,
                 window: Callable[[], Window], max_in_flight: int = 256) -> None:
        self.rate, self.one, self.stop, self.window = rate, one, stop, window
        self.max_in_flight = max_in_flight
        self.started = 0
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if self.rate <= 0:
            return
        t0 = time.monotonic()
        i = 0
        while not self.stop.is_set():
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            if len(self._tasks) >= self.max_in_flight:
                self.dropped += 1
                self.window().dropped += 1
            else:
                task = asyncio.create_task(self.one(i))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self.started += 1
            i += 1

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in set(self._tasks):
            task.cancel()


class Writer:
    """Creates, rewrites (text or price only) and deletes projects through the REST API.
    Every ``probe_every``-th write asks ``wait_indexed``: its round trip, from sending it until
    the answer says the index holds its version, is the write-to-searchable time a client sees."""

    def __init__(self, client: httpx.AsyncClient, history: History, window: Callable[[], Window],
                 *, seed: int, probe_every: int) -> None:
        self.client, self.history, self.window = client, history, window
        self.rng = random.Random(seed)
        self.live: dict[str, dict[str, Any]] = {}
        self.busy: set[str] = set()  # ids with a write in flight: one write per project at once
        self.probe_every = probe_every

    def _record(self, kind: str, op: str, **fields: Any) -> None:
        getattr(self.history, kind).append({"op": op, "t": time.time(), **fields})

    def _pick(self) -> str | None:
        ids = list(self.live)
        for _ in range(8):
            if not ids:
                return None
            pid = self.rng.choice(ids)
            if pid not in self.busy:
                return pid
        return None

    def _draw(self) -> str:
        roll, total = self.rng.random(), 0.0
        for op, share in WRITE_MIX:
            total += share
            if roll < total:
                return op
        return WRITE_MIX[-1][0]

    async def seed(self, count: int, concurrency: int = 8) -> None:
        """Creates ``count`` projects before the clock starts (acknowledged like any write)."""
        queue = list(range(count))

        async def worker() -> None:
            while queue:
                queue.pop()
                await self._write("create", "POST", "/api/v1/projects/", demo_project(self.rng),
                                  None, probe=False)
        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def one(self, i: int) -> None:
        op = self._draw()
        pid = None if op == "create" else self._pick()
        if pid is None:
            op = "create"
        if op == "create":
            await self._write(op, "POST", "/api/v1/projects/", demo_project(self.rng), None,
                              probe=i % self.probe_every == 0)
            return
        assert pid is not None
        self.busy.add(pid)
        try:
            if op == "update_text":
                body: dict[str, Any] | None = {
                    **self.live[pid], "description": demo_project(self.rng)["description"]}
                method = "PUT"
            elif op == "update_price":
                body = {**self.live[pid], "final_price": round(self.rng.uniform(1_000, 90_000), 2)}
                method = "PUT"
            else:
                body, method = None, "DELETE"
            await self._write(op, method, f"/api/v1/projects/{pid}", body, pid,
                              probe=i % self.probe_every == 0)
        finally:
            self.busy.discard(pid)

    async def _write(self, op: str, method: str, path: str, body: dict[str, Any] | None,
                     pid: str | None, *, probe: bool) -> None:
        params = {"wait_indexed": WAIT_INDEXED_S} if probe else {}
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, json=body, params=params)
        except httpx.ConnectError as e:  # never reached the server (serve is down): not applied
            self._record("aborted", op, id=pid, error=type(e).__name__)
            self.window().write_errors += 1
            await asyncio.sleep(0.05)
            return
        except httpx.HTTPError as e:  # sent, outcome unknown
            self._record("indeterminate", op, id=pid, error=type(e).__name__)
            self.window().write_errors += 1
            return
        ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 500:
            self._record("indeterminate", op, id=pid, status=response.status_code)
            self.window().write_errors += 1
            return
        if response.status_code >= 400:
            self._record("aborted", op, id=pid, status=response.status_code)
            if response.status_code == 404 and pid:
                self.live.pop(pid, None)
            return
        result = response.json()
        self._record("acknowledged", op, id=result["id"], version=result["version"])
        if op == "delete":
            self.live.pop(result["id"], None)
        else:
            assert body is not None
            self.live[result["id"]] = {k: result[k] for k in body}
        window = self.window()
        if probe:
            indexed = result.get("indexed_version")
            if indexed is not None and indexed >= result["version"]:
                window.searchable_ms.append(ms)
            else:
                window.not_searchable_in_time += 1
        else:
            window.write_ms.append(ms)


def german_queries(seed: int) -> Callable[[], str]:
    """Distinct German search phrases from the demo vocabulary. Distinct, so that the query
    cache never answers: a cache that answers more often as the hour goes on would hide a drift."""
    rng = random.Random(seed)
    shapes = ["{name} aus {wood} mit {f1}", "{name} {wood} mit {f1} und {f2}",
              "{name} mit {f1} in {region}", "{wood} {name} für {context}",
              "{name} mit {f1}, {f2} und {f3}", "suche {name} aus {wood}, {region}"]
    contexts = ["Altbau", "Neubau", "Ferienhaus", "Mietwohnung", "Einfamilienhaus"]
    seen: set[str] = set()

    def phrase() -> str:
        kind = KINDS[rng.choice(list(KINDS))]
        f1, f2, f3 = rng.sample(kind.features["de"], 3)
        return rng.choice(shapes).format(
            name=rng.choice(kind.names["de"]), wood=rng.choice(WOODS["de"]), f1=f1, f2=f2, f3=f3,
            region=rng.choice(REGIONS), context=rng.choice(contexts))

    def draw() -> str:
        for _ in range(20):
            text = phrase()
            if text not in seen:
                break
        else:  # the vocabulary is nearly exhausted: number the phrase
            text = f"{phrase()} ({len(seen)})"
        seen.add(text)
        return text
    return draw


class Searcher:
    """find-similar (default mode, top 5) with German queries; client round trip in ms."""

    def __init__(self, client: httpx.AsyncClient, window: Callable[[], Window], *, seed: int) -> None:
        self.client, self.window = client, window
        self.query = german_queries(seed)

    async def one(self, i: int) -> None:
        started = time.perf_counter()
        try:
            response = await self.client.post("/api/v1/similarity/find-similar",
                                              json={"query": self.query(), "top_k": 5})
        except httpx.HTTPError:
            self.window().search_errors += 1
            return
        if response.status_code != 200:
            self.window().search_errors += 1
            return
        self.window().search_ms.append((time.perf_counter() - started) * 1000)
