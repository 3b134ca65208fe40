"""Deterministic crash points for tests: kill this process at a named step of the data path.

Test-only. Set ``HANDWERK_CRASH_POINT`` to one of ``CRASH_POINTS`` and the process sends
itself SIGKILL the first time it reaches that step, so a test can prove that a crash exactly
there loses nothing and applies nothing twice in a way that regresses state.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

RELAY_AFTER_PUBLISH = "relay.after_publish_before_mark"
CONSUMER_AFTER_INDEX_WRITE = "consumer.after_index_write_before_commit"
STORE_AFTER_OUTBOX_WRITE = "store.after_outbox_write_before_commit"
CRASH_POINTS = frozenset({RELAY_AFTER_PUBLISH, CONSUMER_AFTER_INDEX_WRITE, STORE_AFTER_OUTBOX_WRITE})


class CrashPoints:
    """Holds the one armed point (or none); ``reached`` kills the process there."""

    def __init__(self, armed: str | None) -> None:
        if armed is not None and armed not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {armed!r}; known: {sorted(CRASH_POINTS)}")
        self._armed = armed

    def reached(self, point: str) -> None:
        if point == self._armed:
            log.error("crash point %s reached: SIGKILL (test-only fault injection)", point)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


NO_CRASH = CrashPoints(None)
