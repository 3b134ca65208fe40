"""The consumer under faults, in-process against the real broker, index and model: an index
that refuses writes pauses consumption without committing, and resumes by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from handwerk.consumer.applier import IndexApplier
from handwerk.consumer.worker import IndexingConsumer
from handwerk.embedding import Embedder
from handwerk.events import UPSERTED, build_event, encode_event
from handwerk.index.base import IndexUnavailable, Tombstone, UpsertPoint
from handwerk.index.edge import EdgeVectorIndex
from handwerk.kafka import ensure_topics
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.conftest import DOCKER, Stack
from tests.helpers import async_wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DOCKER, reason="embedded index only; same code as the server path")]


class InterruptibleIndex(EdgeVectorIndex):
    """The real Edge index with a switch that makes writes fail like an unreachable server
    (fault injection: reads and the engine underneath stay real)."""

    down = False

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone]) -> None:
        if self.down:
            raise IndexUnavailable("injected: index unreachable")
        await super().write(upserts, tombstones)


@pytest.fixture
async def setup(stack: Stack, tmp_path: Path, embedder: Embedder
                ) -> AsyncIterator[tuple[Settings, InterruptibleIndex]]:
    name = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, data_dir=tmp_path,
                        kafka_topic=f"faults.{name}", kafka_dlq_topic=f"faults.{name}.dlq",
                        consumer_group=f"faults-{name}", kafka_partitions=2,
                        kafka_session_timeout_ms=6000)
    await ensure_topics(settings)
    index = InterruptibleIndex(tmp_path / "index", "p", model=embedder.model_name,
                               dimension=embedder.dimension)
    await index.open()
    try:
        yield settings, index
    finally:
        await index.close()


async def committed(settings: Settings) -> dict[int, int | None]:
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                             group_id=settings.consumer_group, enable_auto_commit=False)
    await probe.start()
    try:
        return {p: await probe.committed(TopicPartition(settings.kafka_topic, p))
                for p in range(settings.kafka_partitions)}
    finally:
        await probe.stop()


async def test_index_outage_pauses_without_commit_and_resumes(
        setup: tuple[Settings, InterruptibleIndex], embedder: Embedder) -> None:
    settings, index = setup
    metrics = Metrics()
    consumer = IndexingConsumer(settings, IndexApplier(index, embedder, metrics), metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await asyncio.wait_for(consumer.ever_assigned.wait(), 60)
        index.down = True
        pid = str(uuid.uuid4())
        data = {"id": pid, "name": "Treppe", "description": "Faltwerktreppe Eiche",
                "project_type": "stairs", "region": "Bayern", "total_area_sqm": 5.0,
                "wood_type": "Eiche", "complexity": 3, "final_price": 9000.0}
        await producer.send_and_wait(settings.kafka_topic, encode_event(build_event(
            event_type=UPSERTED, project_id=pid, version=1, data=data)), key=pid.encode())

        async def failing() -> bool:
            return not consumer.index_healthy and \
                metrics.index_write_failures._value.get() >= 2  # noqa: SLF001
        await async_wait_until(failing, timeout=30, message="consumer saw the outage")
        assert not consumer.ready
        assert await index.get_states([pid]) == {}
        assert all(offset is None for offset in (await committed(settings)).values())

        index.down = False

        async def applied() -> bool:
            return (await index.get_states([pid])).get(pid) is not None and consumer.index_healthy
        await async_wait_until(applied, timeout=60, message="consumer resumed by itself")

        async def offset_committed() -> bool:
            return sum(o or 0 for o in (await committed(settings)).values()) == 1
        await async_wait_until(offset_committed, timeout=30, message="offset committed after apply")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()


def _event(pid: str) -> bytes:
    data = {"id": pid, "name": "Schrank", "description": "Einbauschrank Buche",
            "project_type": "wardrobe", "region": "Hessen", "total_area_sqm": 3.0,
            "wood_type": "Buche", "complexity": 2, "final_price": 3000.0}
    return encode_event(build_event(event_type=UPSERTED, project_id=pid, version=1, data=data))


async def test_broker_restart_below_our_position_rewinds(tmp_path: Path, embedder: Embedder) -> None:
    """The memory-only broker restarts with empty logs while the consumer sits at offset 10:
    records written at offsets 0..9 of the new log must not be skipped."""
    from handwerk.kafka import LocalBroker

    broker = LocalBroker()
    broker.start()
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=tmp_path,
                        kafka_partitions=1, kafka_session_timeout_ms=6000)
    index = EdgeVectorIndex(tmp_path / "index", "p", model=embedder.model_name,
                            dimension=embedder.dimension)
    await index.open()
    metrics = Metrics()
    consumer = IndexingConsumer(settings, IndexApplier(index, embedder, metrics), metrics)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None

    async def produce(count: int) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for pid in ids:
                await producer.send_and_wait(settings.kafka_topic, _event(pid), key=pid.encode())
        finally:
            await producer.stop()
        return ids

    def all_indexed(ids: list[str]) -> object:
        async def check() -> bool:
            return len(await index.get_states(ids)) == len(ids)
        return check

    try:
        await ensure_topics(settings)
        task = asyncio.create_task(consumer.run(stop))
        await asyncio.wait_for(consumer.ever_assigned.wait(), 60)
        first = await produce(10)
        await async_wait_until(all_indexed(first), timeout=60, message="first ten indexed")  # type: ignore[arg-type]

        broker.stop()
        broker.start()  # same port, empty memory: topics, records and offsets are gone
        await ensure_topics(settings)  # what the relay does when topics go missing
        second = await produce(5)  # offsets 0..4, all below the consumer's position 10
        await async_wait_until(all_indexed(second), timeout=90, message="new log read from 0")  # type: ignore[arg-type]
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await index.close()
        broker.stop()
