"""Background roles (relay, consumers, periodic reconcile) under supervision.

A crashed role is never only logged: inside ``serve`` it is restarted with backoff and
reported as down until it runs again; in a headless process (``handwerk relay`` /
``handwerk consume``) it ends the process with a non-zero exit, so a supervisor (systemd,
Docker, Kubernetes) restarts it. Shutdown waits for every task, cancels what outlives the
grace period, and awaits the cancelled ones too, so their ``finally`` blocks (leave the
group, release the lease) run before the clients they use are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from handwerk.metrics import Metrics
from handwerk.process.backoff import Backoff
from handwerk.process.waiting import stopped_within

log = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class TaskStatus:
    name: str
    state: str = "running"  # running | restarting | crashed | finished
    crashes: int = 0
    last_error: str | None = None
    since: float = 0.0


class Supervisor:
    def __init__(self, stop: asyncio.Event, metrics: Metrics, *, restart: bool) -> None:
        self._stop = stop
        self._metrics = metrics
        self._restart = restart
        self._tasks: list[asyncio.Task[None]] = []
        self.status: dict[str, TaskStatus] = {}
        self.crashed = asyncio.Event()  # set when a task died for good (restart=False)

    def spawn(self, name: str, work: Work) -> None:
        self.status[name] = TaskStatus(name, since=time.monotonic())
        self._tasks.append(asyncio.create_task(self._supervise(name, work), name=name))

    async def _supervise(self, name: str, work: Work) -> None:
        status = self.status[name]
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self._stop.is_set():
            started = time.monotonic()
            status.state, status.since = "running", started
            try:
                await work()
                status.state = "finished"
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                status.crashes += 1
                status.last_error = f"{type(e).__name__}: {str(e)[:200]}"
                log.error("background task %s crashed", name, exc_info=e)
                if not self._restart:
                    status.state = "crashed"
                    self.crashed.set()
                    return
                self._metrics.task_restarts.labels(name).inc()
                status.state = "restarting"
                if time.monotonic() - started > 60:
                    backoff.reset()  # it ran fine for a while: this is a new incident
                if await stopped_within(self._stop, backoff.next_delay()):
                    return

    @property
    def down(self) -> list[str]:
        return [s.name for s in self.status.values() if s.state in ("restarting", "crashed")]

    async def stop(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the tasks to end on the stop event, then cancel the rest
        and await them as well."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for task in pending:
            log.warning("task %s did not stop within %.0fs: cancelling", task.get_name(), grace_s)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
