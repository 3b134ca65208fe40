"""Small test helpers: wait on a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np

from handwerk.index.protocol import Hit, SearchFilters

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout}s (last: {last!r})")


async def async_wait_until(check: Callable[[], Awaitable[T]], *, timeout: float = 30.0,
                           interval: float = 0.05, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout}s (last: {last!r})")


class SlowEncoder:
    """A query encoder that holds every call until ``release`` is set (admission limits)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        await self.release.wait()
        return np.zeros((len(texts), 4), dtype=np.float32)


class EmptyIndex:
    """A search index that finds nothing (tests of the query path around the index)."""

    supports_keywords = False

    async def search(self, vector: Sequence[float] | None, *, top_k: int, threshold: float,
                     filters: SearchFilters, **_mode: object) -> list[Hit]:
        return []

    async def search_batch(self, vectors: Sequence[Sequence[float]] | None, *, top_k: int,
                           threshold: float, filters: SearchFilters,
                           texts: Sequence[str] | None = None, **_mode: object) -> list[list[Hit]]:
        return [[] for _ in (vectors if vectors is not None else texts or ())]
