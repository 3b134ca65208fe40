"""The outbox gauges, refreshed from the database by any process that has it (serve, api,
relay), independent of the relay's own loop: a relay that is down or stuck must not freeze
the very gauges that show it."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handwerk.metrics import Metrics
from handwerk.outbox.backlog import oldest_unpublished_age_s, outbox_backlog
from handwerk.process.waiting import stopped_within

log = logging.getLogger(__name__)


async def refresh_outbox_gauges(sessions: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
    """``handwerk_ml_outbox_backlog`` and ``handwerk_ml_outbox_oldest_age_seconds`` now."""
    metrics.outbox_backlog.set(await outbox_backlog(sessions))
    metrics.outbox_oldest_age.set(await oldest_unpublished_age_s(sessions))


async def watch_outbox(sessions: async_sessionmaker[AsyncSession], metrics: Metrics,
                       stop: asyncio.Event, interval_s: float) -> None:
    """Refresh the outbox gauges every ``interval_s`` until ``stop``; a failed read (database
    locked or gone) is logged and retried at the next interval, never raised."""
    while True:
        try:
            await refresh_outbox_gauges(sessions, metrics)
        except Exception as e:
            log.warning("outbox gauges not refreshed: %s: %s", type(e).__name__, str(e)[:200])
        if await stopped_within(stop, interval_s):
            return
