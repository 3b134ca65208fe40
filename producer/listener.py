"""The relay's ear on PostgreSQL: a dedicated connection LISTENs on the outbox channel and
wakes the relay when a writer in any process commits outbox rows (see ``outbox/notify.py``).

Polling stays: if this connection drops, notifications sent meanwhile are lost, so the relay
still polls at its interval, and this task reconnects with backoff (and wakes the relay once
after every (re)connect, for whatever committed while it was not listening)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from handwerk.outbox.notify import OUTBOX_CHANNEL
from handwerk.outbox.store import OutboxSignal
from handwerk.process.backoff import Backoff

log = logging.getLogger(__name__)


class OutboxListener:
    """States: not listening / listening (``listening``). ``run`` until ``stop`` is set."""

    def __init__(self, engine: AsyncEngine, signal: OutboxSignal,
                 channel: str = OUTBOX_CHANNEL) -> None:
        self._engine = engine
        self._signal = signal
        self._channel = channel
        self.listening = False
        self.notifications = 0

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.notifications += 1
        self._signal.notify()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        while not stop.is_set():
            try:
                await self._listen_once(stop)
                backoff.reset()
            except (SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("outbox listener: %s; polling meanwhile, then reconnecting", e)
            finally:
                self.listening = False
            if not stop.is_set():
                await backoff.wait(stop)

    async def _listen_once(self, stop: asyncio.Event) -> None:
        """One connection's life: LISTEN until ``stop`` or until the server drops it. The
        connection never goes back to the pool (it is invalidated), so no pooled connection
        ever carries a LISTEN."""
        async with self._engine.connect() as connection:
            try:
                raw = (await connection.get_raw_connection()).driver_connection
                if raw is None:
                    raise OSError("outbox listener: the pool handed out a closed connection")
                lost = asyncio.Event()
                raw.add_termination_listener(lambda _c: lost.set())
                await raw.add_listener(self._channel, self._on_notify)
                self.listening = True
                log.info("outbox listener: LISTEN %s", self._channel)
                self._signal.notify()  # anything committed before LISTEN took effect
                waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if lost.is_set():
                    log.warning("outbox listener: connection lost; reconnecting")
            finally:
                await connection.invalidate()
