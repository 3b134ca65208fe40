"""The query path's fast paths: concurrent queries share one encoder run (``QueryBatcher``), and
query vectors are remembered by model and text (``QueryCache``).

Batching rule. A query that arrives while the encoder is idle and nothing waits runs at once,
alone: it never pays a gather window. A query that arrives while another is being encoded joins
the *pending* batch; the first such query opens a gather window (``window_s``). The pending
batch runs as one encoder call when its window is over *and* the encoder is idle (with one
query thread it could not start earlier anyway), or at once when it holds ``max_texts`` texts.
Texts repeated within a batch are encoded once. A run's failure fails every caller of that
run with the same exception. The batcher holds no queue of its own beyond the callers that
wait: the search admission limit (``max_pending_searches``) bounds them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

EmbedFn = Callable[[list[str]], Awaitable[np.ndarray]]


@dataclass(frozen=True, slots=True)
class Embedded:
    """One caller's rows, and when and how long the encoder run that made them took."""

    vectors: np.ndarray
    run_started: float
    """``time.perf_counter()`` when the encoder run began."""
    run_s: float
    """Duration of the whole encoder run (shared with the other callers of that run)."""
    batch_texts: int
    """Distinct texts in that run (1 for a lone query)."""


@dataclass(slots=True)
class _Waiter:
    texts: list[str]
    future: asyncio.Future[Embedded]


@dataclass(slots=True)
class _Batch:
    waiters: list[_Waiter] = field(default_factory=list)
    size: int = 0
    window_over: bool = False
    timer: asyncio.TimerHandle | None = None


class QueryBatcher:
    """Micro-batches concurrent query embeddings into one ``embed`` call (see the module doc).

    ``embed`` is the embedder's ``embed_queries``: one encoder run on its query thread. Use one
    batcher per embedder, on one event loop. ``runs``, ``windows`` and ``texts`` count encoder
    runs, gather windows opened and texts encoded (for tests and measurements)."""

    def __init__(self, embed: EmbedFn, *, window_s: float = 0.002, max_texts: int = 32,
                 on_run: Callable[[int], None] | None = None) -> None:
        if window_s < 0 or max_texts < 1:
            raise ValueError("window_s must be >= 0 and max_texts >= 1")
        self._embed = embed
        self._window_s = window_s
        self._max = max_texts
        self._on_run = on_run
        self._running = 0
        self._pending: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.runs = 0
        self.windows = 0
        self.texts = 0

    @property
    def busy(self) -> bool:
        """An encoder run is in flight or a batch waits: a new query would be batched."""
        return self._running > 0 or self._pending is not None

    async def embed(self, texts: Sequence[str]) -> Embedded:
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to embed")
        if not self.busy:
            return await self._run_alone(texts)
        batch = self._pending
        if batch is not None and batch.size + len(texts) > self._max:
            self._flush()  # full: it runs (queued behind the current run); start another
            batch = None
        if batch is None:
            batch = self._pending = _Batch()
            self.windows += 1
            if self._window_s > 0:
                batch.timer = asyncio.get_running_loop().call_later(
                    self._window_s, self._window_elapsed, batch)
            else:
                batch.window_over = True
        waiter = _Waiter(texts, asyncio.get_running_loop().create_future())
        batch.waiters.append(waiter)
        batch.size += len(texts)
        if batch.size >= self._max:
            self._flush()
        return await waiter.future

    async def _run_alone(self, texts: list[str]) -> Embedded:
        unique = list(dict.fromkeys(texts))
        self._start_run(len(unique))
        started = time.perf_counter()
        try:
            vectors = await self._embed(unique)
        finally:
            self._running -= 1
            self._maybe_flush()
        if len(unique) != len(texts):
            row = {t: i for i, t in enumerate(unique)}
            vectors = vectors[[row[t] for t in texts]]
        return Embedded(vectors, started, time.perf_counter() - started, len(unique))

    def _start_run(self, size: int) -> None:
        self._running += 1
        self.runs += 1
        self.texts += size
        if self._on_run is not None:
            self._on_run(size)

    def _window_elapsed(self, batch: _Batch) -> None:
        batch.timer = None
        batch.window_over = True
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        batch = self._pending
        if batch is not None and batch.window_over and self._running == 0:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        row: dict[str, int] = {}
        for waiter in batch.waiters:
            for text in waiter.texts:
                row.setdefault(text, len(row))
        self._start_run(len(row))
        task = asyncio.get_running_loop().create_task(self._run(batch.waiters, row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, waiters: list[_Waiter], row: dict[str, int]) -> None:
        started = time.perf_counter()
        try:
            vectors = await self._embed(list(row))
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.future.cancel()
            raise
        except Exception as e:  # the same exception for every caller of this run
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(e)
        else:
            run_s = time.perf_counter() - started
            for waiter in waiters:
                if not waiter.future.done():  # a caller that gave up (cancelled)
                    waiter.future.set_result(Embedded(
                        vectors[[row[t] for t in waiter.texts]], started, run_s, len(row)))
        finally:
            self._running -= 1
            self._maybe_flush()


class QueryCache:
    """LRU of query vectors by (model name, text); ``size`` 0 keeps nothing. Event-loop only
    (no locking). Stored vectors are read-only copies."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> np.ndarray | None:
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def put(self, key: Hashable, vector: np.ndarray) -> None:
        if self.size == 0:
            return
        stored = np.array(vector, dtype=np.float32, copy=True)
        stored.flags.writeable = False
        self._items[key] = stored
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
