"""Background roles under supervision: restarted inside serve, fatal when headless, and
awaited (finally blocks included) before shutdown goes on."""

from __future__ import annotations

import asyncio

from handwerk.metrics import Metrics
from handwerk.process.supervision import Supervisor
from tests.helpers import async_wait_until


async def test_a_crashed_task_is_restarted_and_reported_down_meanwhile() -> None:
    stop = asyncio.Event()
    metrics = Metrics()
    supervisor = Supervisor(stop, metrics, restart=True)
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("sqlite3.OperationalError: database is locked")
        healthy.set()
        await stop.wait()

    supervisor.spawn("relay", flaky)
    await async_wait_until(lambda: _value(supervisor.down == ["relay"]), timeout=5,
                           message="reported down while restarting")
    await asyncio.wait_for(healthy.wait(), 10)
    assert supervisor.down == [] and supervisor.status["relay"].crashes == 2
    assert metrics.task_restarts.labels("relay")._value.get() == 2  # noqa: SLF001
    assert not supervisor.crashed.is_set()
    stop.set()
    await supervisor.stop(grace_s=5)


async def test_a_headless_crash_is_fatal() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop, Metrics(), restart=False)

    async def crash() -> None:
        raise RuntimeError("boom")

    supervisor.spawn("consumer-0", crash)
    await asyncio.wait_for(supervisor.crashed.wait(), 5)
    assert supervisor.down == ["consumer-0"]
    assert supervisor.status["consumer-0"].last_error == "RuntimeError: boom"
    await supervisor.stop(grace_s=1)


async def test_stop_awaits_cancelled_tasks_and_their_cleanup() -> None:
    """Regression (review #6.8): tasks cancelled after the grace period must be awaited
    before the clients they use are closed, so their finally blocks (leave the group,
    release the lease) run."""
    stop = asyncio.Event()
    supervisor = Supervisor(stop, Metrics(), restart=True)
    cleaned = False

    async def stubborn() -> None:
        nonlocal cleaned
        try:
            await asyncio.Event().wait()  # ignores the stop event: only cancel ends it
        finally:
            await asyncio.sleep(0.05)  # e.g. consumer.stop() leaving the group
            cleaned = True

    supervisor.spawn("consumer-0", stubborn)
    await asyncio.sleep(0)
    stop.set()
    await supervisor.stop(grace_s=0.1)
    assert cleaned


async def _value(value: bool) -> bool:
    return value
