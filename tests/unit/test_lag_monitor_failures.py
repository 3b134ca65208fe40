"""The lag monitor against a broker that is not there: a read fails with a named error, the
periodic task survives, keeps the last snapshot and stops on the stop event at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from handwerk.kafka import free_port
from handwerk.metrics import Metrics
from handwerk.operations.lag import (
    LagMonitor,
    LagSnapshot,
    LagUnavailable,
    PartitionLag,
    _stop_client,
)
from handwerk.settings import Settings
from tests.helpers import async_wait_until


def _nowhere(**extra: object) -> Settings:
    return Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_topic="t",
                    consumer_group="g", **extra)  # type: ignore[arg-type]


async def test_a_read_without_a_broker_raises_lag_unavailable() -> None:
    monitor = LagMonitor(_nowhere(), Metrics(), read_timeout_s=5)
    try:
        with pytest.raises(LagUnavailable):
            await monitor.read()
        assert monitor.last_error is not None and monitor.snapshot is None
    finally:
        await monitor.close()
    with pytest.raises(RuntimeError, match="closed"):
        await monitor.read()


async def test_the_periodic_task_survives_failed_reads_and_keeps_the_last_snapshot() -> None:
    metrics = Metrics()
    monitor = LagMonitor(_nowhere(lag_interval_s=0.05), metrics, read_timeout_s=5)
    kept = LagSnapshot("g", "t", 1.0, (PartitionLag(0, 1, 3, None, None, None),))
    monitor.snapshot = kept
    metrics.lag_monitor_last_success.set(1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await async_wait_until(lambda: _ready(monitor.last_error is not None), timeout=10,
                               message="a failed read was recorded")
        assert not task.done()
        assert monitor.snapshot is kept
        assert metrics.registry.get_sample_value(
            "handwerk_ml_lag_monitor_last_success_timestamp_seconds") == 1.0
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 2
        await monitor.close()


async def test_stop_interrupts_a_read_that_hangs() -> None:
    """A broker that accepts connections and never answers (SIGSTOPped): stop still ends the
    task at once instead of after the read timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", kafka_topic="t",
                        consumer_group="g")
    monitor = LagMonitor(settings, Metrics(), read_timeout_s=60)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await async_wait_until(lambda: _ready(bool(accepted)), timeout=10,
                               message="the monitor connected")  # its read cannot finish now
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await monitor.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def _ready(value: bool) -> bool:
    return value


class _LeakyConsumer:
    """aiokafka 0.14's stop() with the broker down: its fetcher awaits its own cancelled retry
    task and lets that CancelledError out, before closing the connections."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.connections_closed = False
        self._client = self

    async def stop(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        raise asyncio.CancelledError

    async def close(self) -> None:
        self.connections_closed = True


async def test_a_cancelled_error_from_aiokafka_stop_is_not_taken_for_ours() -> None:
    leaky = _LeakyConsumer()
    await _stop_client(leaky)  # type: ignore[arg-type]
    assert leaky.connections_closed


async def test_our_own_cancellation_while_stopping_a_client_is_kept() -> None:
    hanging = _LeakyConsumer(hang=True)
    task = asyncio.create_task(_stop_client(hanging))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
