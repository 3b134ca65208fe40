"""When reconcile runs in the consuming process: at startup, every ``interval``, soon again
while drift remains, and as soon as the outbox has drained after the broker lost its log.

A check that read every in-flight event (``in_flight.py``) knows that what it still finds
missing, stale or orphaned is on nobody's way: it is repaired at once. Hidden and ahead
(their repair rewrites the database row), and everything a check found without a complete
in-flight read, are repaired only when two consecutive checks agree and the pipeline is
quiet, as before.

After a loss, the check waits until the outbox rows written before the report are published
(the relay marks a row only after the broker's ack; a row acknowledged by the broker that
then died is marked too, and is then drift), then runs; follow-up checks (5 s, then doubling,
never longer than ``interval``) keep the drift gauge current until nothing is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from handwerk.index.protocol import VectorIndex
from handwerk.metrics import Metrics
from handwerk.operations.in_flight import InFlightEvents
from handwerk.operations.log_loss import LogLoss
from handwerk.operations.reconcile import DriftReport, find_drift, persistent, repair
from handwerk.outbox.backlog import last_outbox_seq, unpublished_through
from handwerk.outbox.store import ProjectStore
from handwerk.process.waiting import stopped_within
from handwerk.settings import Settings

log = logging.getLogger(__name__)

FOLLOW_UP_S = 5.0
DRAIN_TIMEOUT_S = 20.0


def repair_now(previous: DriftReport | None, current: DriftReport) -> DriftReport:
    """What to repair after ``current``: with a complete in-flight read, missing/stale/orphaned
    at once, hidden/ahead once seen twice; without one, only what was seen twice."""
    twice = persistent(previous, current)
    if not current.in_flight_known:
        return twice
    return DriftReport(current.database_projects, current.index_points,
                       missing=current.missing, stale=current.stale, orphaned=current.orphaned,
                       hidden=twice.hidden, ahead=twice.ahead, external=current.external,
                       in_flight=current.in_flight, in_flight_known=True)


class Reconciler:
    """Drift checks and repairs of one process; ``last`` is the latest check."""

    def __init__(self, settings: Settings, store: ProjectStore,
                 index: Callable[[], VectorIndex], metrics: Metrics, loss: LogLoss, *,
                 quiet: Callable[[], Awaitable[bool]]) -> None:
        self._settings = settings
        self._store = store
        self._index = index
        self._metrics = metrics
        self._loss = loss
        self._quiet = quiet  # outbox drained and consumer caught up
        self.last: DriftReport | None = None

    def _probe(self) -> InFlightEvents | None:
        """In-flight events are read where a broker is configured (the local broker's
        address is filled in by ``serve``); without one every difference is drift."""
        if self._settings.kafka.bootstrap_servers is None:
            return None
        return InFlightEvents(self._settings, self._store.sessions)

    async def check(self, *, repair_drift: bool) -> DriftReport:
        """One check (startup, the CLI): repairs everything it found when asked to."""
        report = await find_drift(self._store, self._index(), self._probe())
        self._metrics.index_drift.set(report.drift)
        if repair_drift and report.drift:
            await self._repair(report, "drift")
        self.last = report
        return report

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        previous: DriftReport | None = None
        # drift left by the startup check: look again soon, so the gauge does not keep it
        follow_up = FOLLOW_UP_S if self.last is not None and self.last.drift else None
        recovering = False  # after a loss: until nothing is drift or in flight any more
        while True:
            wait = interval if follow_up is None else min(interval, follow_up)
            if not await self._woken(stop, wait):
                return
            loss = self._loss.take()
            if loss is not None:
                recovering = True
                await self._drained(stop)
                previous = None  # what was seen before the loss says nothing now
            started = time.monotonic()
            try:
                current = await find_drift(self._store, self._index(), self._probe())
            except Exception:
                log.warning("reconcile check failed", exc_info=True)
                if loss is not None:
                    self._loss.report(loss)  # try again soon
                follow_up = FOLLOW_UP_S
                continue
            self._metrics.index_drift.set(current.drift)
            fix = repair_now(previous, current)
            if fix.drift and (current.in_flight_known or await self._quiet()):
                await self._repair(fix, "drift after a lost log" if loss else "drift")
            log.info("reconcile check%s took %.2fs: %s", f" ({loss})" if loss else "",
                     time.monotonic() - started, current.summary())
            self.last, previous = current, current
            if current.drift == 0 and (not recovering or current.in_flight == 0):
                follow_up, recovering = None, False
            else:
                follow_up = FOLLOW_UP_S if follow_up is None else follow_up * 2

    async def _repair(self, report: DriftReport, what: str) -> None:
        emitted = await repair(self._store, report)
        self._metrics.reconcile_reemitted.inc(emitted)
        log.warning("reconcile: %s %s, re-emitted %d events", what, report.summary(), emitted)

    async def _woken(self, stop: asyncio.Event, timeout: float) -> bool:
        """Wait for the timer or a loss report; False once ``stop`` is set."""
        if stop.is_set():
            return False
        if self._loss.pending:
            return True
        lost = asyncio.ensure_future(self._loss.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({lost, stopping}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            stopping.cancel()
        return not stop.is_set()

    async def _drained(self, stop: asyncio.Event) -> None:
        """Until the outbox rows written before now are published (bounded: a broker still
        away must not hold the check off; unpublished rows count as in flight anyway)."""
        sessions = self._store.sessions
        through = await last_outbox_seq(sessions)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while await unpublished_through(sessions, through) > 0:
            if time.monotonic() >= deadline:
                log.warning("reconcile after a lost log: the outbox did not drain within %.0fs; "
                            "checking anyway", DRAIN_TIMEOUT_S)
                return
            if await stopped_within(stop, 0.2):
                return
