"""One retry schedule for every loop: exponential backoff with full jitter, stop-aware."""

from __future__ import annotations

import asyncio
import random

from handwerk.process.waiting import stopped_within


class Backoff:
    """``delay()`` grows ``initial * factor**n`` up to ``maximum``; the wait is jittered in
    [delay/2, delay*1.5) so retries from many clients spread out. ``reset()`` after success."""

    def __init__(self, initial: float = 0.2, maximum: float = 30.0, factor: float = 2.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._current = initial
        self.attempts = 0

    def reset(self) -> None:
        self._current = self._initial
        self.attempts = 0

    def next_delay(self) -> float:
        delay = self._current * (0.5 + random.random())
        self._current = min(self._current * self._factor, self._maximum)
        self.attempts += 1
        return delay

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep the next delay; True if ``stop`` was set meanwhile (the caller should quit)."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        return await stopped_within(stop, delay)
