"""The consumer under faults, in-process against the real broker, index and model: an index
that refuses writes pauses consumption without committing, and resumes by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from handwerk.consumer.applier import IndexApplier
from handwerk.consumer.worker import IndexingConsumer
from handwerk.contract.events import UPSERTED, build_event, encode_event
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import IndexRejected, IndexUnavailable, Tombstone, UpsertPoint
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

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        if self.down:
            raise IndexUnavailable("injected: index unreachable")
        await super().write(upserts, tombstones, visible=visible)


@pytest.fixture
async def setup(stack: Stack, tmp_path: Path, embedder: Embedder
                ) -> AsyncIterator[tuple[Settings, InterruptibleIndex]]:
    name = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, data_dir=tmp_path,
                        kafka_topic=f"faults.{name}", kafka_dlq_topic=f"faults.{name}.dlq",
                        consumer_group=f"faults-{name}", kafka_partitions=2,
                        kafka_session_timeout_ms=6000, consumer_unready_after_s=0)
    await ensure_topics(settings.kafka)
    index = InterruptibleIndex(tmp_path / "index", "p", model=embedder.model_name,
                               dimension=embedder.dimension)
    await index.open()
    try:
        yield settings, index
    finally:
        await index.close()


@asynccontextmanager
async def running(member: IndexingConsumer, settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """The member consuming in a task, and a producer for the test; both stopped on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(member.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()


async def committed(settings: Settings) -> dict[int, int | None]:
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             group_id=settings.consumer.group, enable_auto_commit=False)
    await probe.start()
    try:
        return {p: await probe.committed(TopicPartition(settings.kafka.topic, p))
                for p in range(settings.kafka.partitions)}
    finally:
        await probe.stop()


async def test_index_outage_pauses_without_commit_and_resumes(
        setup: tuple[Settings, InterruptibleIndex], embedder: Embedder) -> None:
    settings, index = setup
    metrics = Metrics()
    consumer = IndexingConsumer(settings, IndexApplier(index, embedder, metrics), metrics)
    async with running(consumer, settings) as producer:
        await asyncio.wait_for(consumer.ever_assigned.wait(), 60)
        index.down = True
        pid = str(uuid.uuid4())
        data = {"id": pid, "name": "Treppe", "description": "Faltwerktreppe Eiche",
                "project_type": "stairs", "region": "Bayern", "total_area_sqm": 5.0,
                "wood_type": "Eiche", "complexity": 3, "final_price": 9000.0}
        await producer.send_and_wait(settings.kafka.topic, encode_event(build_event(
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
                await producer.send_and_wait(settings.kafka.topic, _event(pid), key=pid.encode())
        finally:
            await producer.stop()
        return ids

    def all_indexed(ids: list[str]) -> object:
        async def check() -> bool:
            return len(await index.get_states(ids)) == len(ids)
        return check

    try:
        await ensure_topics(settings.kafka)
        task = asyncio.create_task(consumer.run(stop))
        await asyncio.wait_for(consumer.ever_assigned.wait(), 60)
        first = await produce(10)
        await async_wait_until(all_indexed(first), timeout=60, message="first ten indexed")  # type: ignore[arg-type]

        broker.stop()
        broker.start()  # same port, empty memory: topics, records and offsets are gone
        await ensure_topics(settings.kafka)  # what the relay does when topics go missing
        second = await produce(5)  # offsets 0..4, all below the consumer's position 10
        await async_wait_until(all_indexed(second), timeout=90, message="new log read from 0")  # type: ignore[arg-type]
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await index.close()
        broker.stop()


class FlakyEmbedder:
    """The real model behind a switch that fails like an encoder out of memory."""

    def __init__(self, real: Embedder) -> None:
        self._real = real
        self.down = False

    async def embed_documents(self, texts: Sequence[str]) -> object:
        if self.down:
            raise EmbedderUnavailable("injected: out of memory")
        return await self._real.embed_documents(texts)


class RejectingIndex(EdgeVectorIndex):
    """The real Edge index that refuses (permanently, like a Qdrant 4xx) writes of one id."""

    refused: str | None = None

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        if any(p.project_id == self.refused for p in upserts):
            raise IndexRejected("injected: 400 Bad Request")
        await super().write(upserts, tombstones, visible=visible)


def _upsert(pid: str, version: int = 1) -> bytes:
    data = {"id": pid, "name": "Treppe", "description": f"Wangentreppe Eiche {pid[:6]}",
            "project_type": "stairs", "region": "Bayern", "total_area_sqm": 5.0,
            "wood_type": "Eiche", "complexity": 3, "final_price": 9000.0}
    return encode_event(build_event(event_type=UPSERTED, project_id=pid, version=version, data=data))


async def dead_letters(settings: Settings, expected: int, timeout: float = 20) -> list[bytes]:
    probe = AIOKafkaConsumer(settings.kafka.dlq_topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    await probe.start()
    found: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await probe.getmany(timeout_ms=500)
            found.extend(r.value for rs in batch.values() for r in rs)
        return found
    finally:
        await probe.stop()


async def test_records_arriving_during_an_outage_survive_a_rebalance(
        setup: tuple[Settings, InterruptibleIndex], embedder: Embedder) -> None:
    """Regression (review #6.1): while the index is down, a rebalance hands the member a
    fresh, unpaused assignment; records fetched then must not be thrown away (the position
    would move past them and the next commit would skip them for good)."""
    settings, index = setup
    metrics = Metrics()
    member = IndexingConsumer(settings, IndexApplier(index, embedder, metrics), metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(member.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    intruder = AIOKafkaConsumer(settings.kafka.topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                                group_id=settings.consumer.group, enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    intruder_polling: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(member.ever_assigned.wait(), 60)
        index.down = True
        held = [str(uuid.uuid4()) for _ in range(2)]
        for n, pid in enumerate(held):  # the batch the member holds through the outage
            await producer.send_and_wait(settings.kafka.topic, _upsert(pid), key=pid.encode(), partition=n)
        await async_wait_until(lambda: _true(member.outage_since is not None), timeout=30,
                               message="member stalled on the outage")
        during = {p: [str(uuid.uuid4()) for _ in range(3)] for p in range(2)}
        for p, ids in during.items():  # arrive while the member is paused
            for pid in ids:
                await producer.send_and_wait(settings.kafka.topic, _upsert(pid), key=pid.encode(),
                                             partition=p)

        await intruder.start()  # a second member joins: the group rebalances

        async def poll_forever() -> None:
            while True:
                await intruder.getmany(timeout_ms=200)  # holds its partition, never commits
        intruder_polling = asyncio.create_task(poll_forever())
        await async_wait_until(lambda: _true(len(member.assigned) == 1), timeout=60,
                               message="rebalanced to one partition each")
        failures = metrics.index_write_failures._value.get()  # noqa: SLF001
        await async_wait_until(
            lambda: _true(metrics.index_write_failures._value.get() >= failures + 3),  # noqa: SLF001
            timeout=60, message="member kept retrying (and polling) after the rebalance")
        kept = next(iter(member.assigned)).partition

        index.down = False
        wanted = held + during[kept]

        async def all_indexed() -> bool:
            return len(await index.get_states(wanted)) == len(wanted)
        await async_wait_until(all_indexed, timeout=60,
                               message="records that arrived during the outage indexed")
    finally:
        stop.set()
        if intruder_polling is not None:
            intruder_polling.cancel()
        await intruder.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()


async def _true(value: bool) -> bool:
    return value


async def test_embedder_failure_waits_instead_of_dead_lettering(
        setup: tuple[Settings, InterruptibleIndex], embedder: Embedder) -> None:
    """Regression (review #6.3): a dependency failure that is not the index's (the encoder
    out of memory) must not dead-letter good events: back off, commit nothing, resume."""
    settings, index = setup
    metrics = Metrics()
    flaky = FlakyEmbedder(embedder)
    member = IndexingConsumer(settings, IndexApplier(index, flaky, metrics), metrics)  # type: ignore[arg-type]
    async with running(member, settings) as producer:
        await asyncio.wait_for(member.ever_assigned.wait(), 60)
        flaky.down = True
        pid = str(uuid.uuid4())
        await producer.send_and_wait(settings.kafka.topic, _upsert(pid), key=pid.encode())
        await async_wait_until(
            lambda: _true(metrics.dependency_failures.labels("embedder")._value.get() >= 2),  # noqa: SLF001
            timeout=30, message="member waited on the embedder")
        assert not member.ready  # stalled past the (zero) threshold: readiness is red
        assert all(offset is None for offset in (await committed(settings)).values())
        flaky.down = False

        async def applied() -> bool:
            return pid in await index.get_states([pid]) and member.ready
        await async_wait_until(applied, timeout=60, message="resumed by itself")
        assert await dead_letters(settings, expected=1, timeout=3) == []


async def test_a_record_the_index_refuses_is_dead_lettered_alone(
        stack: Stack, tmp_path: Path, embedder: Embedder) -> None:
    """A permanent refusal (a 4xx) is this record's fault: it goes to the DLQ with the reason,
    its batch-mates are applied, and the offsets move on (no endless retry)."""
    name = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, data_dir=tmp_path,
                        kafka_topic=f"reject.{name}", kafka_dlq_topic=f"reject.{name}.dlq",
                        consumer_group=f"reject-{name}", kafka_partitions=1,
                        kafka_session_timeout_ms=6000, batch_max_wait_ms=300)
    await ensure_topics(settings.kafka)
    index = RejectingIndex(tmp_path / "index", "p", model=embedder.model_name,
                           dimension=embedder.dimension)
    await index.open()
    metrics = Metrics()
    member = IndexingConsumer(settings, IndexApplier(index, embedder, metrics), metrics)
    try:
        async with running(member, settings) as producer:
            await asyncio.wait_for(member.ever_assigned.wait(), 60)
            ids = [str(uuid.uuid4()) for _ in range(4)]
            index.refused = ids[1]
            for pid in ids:
                await producer.send(settings.kafka.topic, _upsert(pid), key=pid.encode())
            await producer.flush()
            good = [ids[0], *ids[2:]]

            async def applied() -> bool:
                return len(await index.get_states(good)) == 3
            await async_wait_until(applied, timeout=60, message="batch-mates applied")
            letters = await dead_letters(settings, expected=1)
            assert len(letters) == 1 and ids[1].encode() in letters[0]
            assert metrics.dependency_failures.labels("index")._value.get() == 0  # noqa: SLF001

            async def moved_on() -> bool:
                return (await committed(settings)).get(0) == 4
            await async_wait_until(moved_on, timeout=30, message="offsets committed past the record")
    finally:
        await index.close()
