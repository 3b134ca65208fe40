"""A broker that lost its log: the signal that makes reconcile run at once, not in minutes.

Events the broker acknowledged and then lost are never applied, and no later event brings
them back; only reconcile does. Whoever notices the loss first reports it here:

- the relay, when it had to create the event topic (a memory-only broker restarted, or the
  topic was deleted);
- the consumer, when a partition's high watermark falls below its position (it rewinds);
- the lag monitor, when a partition's committed offset vanishes or goes back, or its high
  watermark falls (``observe``): neither happens to a log that is intact.

Reports coalesce: however many arrive, the reconcile loop takes them as one (``take``).
"""

from __future__ import annotations

import asyncio
import logging

from handwerk.operations.lag import LagSnapshot

log = logging.getLogger(__name__)


class LogLoss:
    """Set by any part that saw the log lost; taken by the reconcile loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None
        self.reports = 0
        self._previous: LagSnapshot | None = None

    @property
    def pending(self) -> bool:
        return self._event.is_set()

    def report(self, reason: str) -> None:
        self.reports += 1
        if not self._event.is_set():
            log.warning("the broker lost its log (%s): reconciling once the outbox has drained",
                        reason)
            self.reason = reason
            self._event.set()

    def take(self) -> str | None:
        """The reason of the pending loss, clearing it (None if nothing is pending)."""
        if not self._event.is_set():
            return None
        self._event.clear()
        reason, self.reason = self.reason, None
        return reason

    async def wait(self) -> None:
        await self._event.wait()

    def observe(self, snapshot: LagSnapshot) -> None:
        """Compare a lag read with the one before it (the lag monitor's callback)."""
        previous, self._previous = self._previous, snapshot
        if previous is not None and previous.topic == snapshot.topic:
            reason = lost_between(previous, snapshot)
            if reason is not None:
                self.report(reason)


def lost_between(before: LagSnapshot, after: LagSnapshot) -> str | None:
    """What in two consecutive lag reads says the log was lost, or None."""
    earlier = {p.partition: p for p in before.partitions}
    for now in after.partitions:
        then = earlier.get(now.partition)
        if now.committed is not None and now.high_watermark < now.committed:
            return (f"partition {now.partition}: high watermark {now.high_watermark} below the "
                    f"committed offset {now.committed}")
        if then is None:
            continue
        if now.high_watermark < then.high_watermark:
            return (f"partition {now.partition}: high watermark fell from "
                    f"{then.high_watermark} to {now.high_watermark}")
        if then.committed is not None and (now.committed is None or now.committed < then.committed):
            return (f"partition {now.partition}: committed offset went from {then.committed} "
                    f"to {now.committed}")
    return None
