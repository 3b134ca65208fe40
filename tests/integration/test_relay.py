"""The relay as its own process: one active publisher through the database lease, a standby
that takes over when the holder dies, and every outbox row published (in order per project)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select

from handwerk.kafka import ensure_topics
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, RelayLease
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.settings import Settings
from tests.conftest import Stack
from tests.helpers import async_wait_until
from tests.integration.server import HandwerkProcess, isolated_env

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Sideboard Nussbaum", description="wandhängend mit Push-to-open",
                       project_type="furniture", region="Tirol", total_area_sqm=2.0,
                       wood_type="Nussbaum", complexity=2, final_price=4_200.0)


def read_topic(bootstrap: str, topic: str, expected: int = 0,
               timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` up to its high watermark, each partition in log order (no
    count cut: a relay killed between ack and mark republishes up to a whole batch). Waits
    until the topic holds at least ``expected`` records; fails if it cannot read them all
    within ``timeout``. The watermark is the one fetch responses carry (``highwater``):
    ``end_offsets()`` is wrong on the local tansu broker (see handwerk/kafka/__init__.py)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            assert expected == 0, f"{topic} does not exist, expected {expected} records"
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: dict[TopicPartition, list[Any]] = {tp: [] for tp in partitions}

        def read_all() -> bool:
            highs = [consumer.highwater(tp) for tp in partitions]
            return (all(h is not None and consumer.position(tp) >= h
                        for tp, h in zip(partitions, highs, strict=True))
                    and sum(len(r) for r in records.values()) >= expected)

        while not read_all():
            assert time.monotonic() < deadline, (
                f"{topic}: read {sum(len(r) for r in records.values())} records in {timeout}s, "
                f"expected at least {expected} and up to the high watermark")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records[tp].extend(batch)
        return [json.loads(r.value) for tp in partitions for r in records[tp]]
    finally:
        consumer.close()


def assert_at_least_once_in_order(events: list[dict[str, Any]],
                                  outbox: list[dict[str, Any]]) -> None:
    """The relay's promise: every outbox event reaches the topic at least once (a relay that
    crashed or lost its lease before marking republishes), and per project the events first
    appear in outbox order. ``events`` is the topic in log order per partition, and a project
    (the record key) lives on one partition."""
    published = {e["id"] for e in events}
    missing = [e["id"] for e in outbox if e["id"] not in published]
    assert not missing, f"{len(missing)} outbox events never reached the topic: {missing[:5]}"
    assert len(events) >= len(outbox)
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            first_seen.setdefault(event["subject"], []).append(int(event["version"]))
    expected: dict[str, list[int]] = {}
    for event in outbox:
        expected.setdefault(event["subject"], []).append(int(event["version"]))
    for project, versions in expected.items():
        assert first_seen[project] == versions, (project, first_seen[project], versions)


def test_read_topic_reads_up_to_the_high_watermark(stack: Stack) -> None:
    """A killed relay may republish up to a batch (500): the reader cuts at the watermark,
    never at a count near ``expected``."""
    topic = f"read-topic.{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(Settings(kafka_bootstrap_servers=stack.bootstrap_servers,
                                       kafka_topic=topic, kafka_dlq_topic=f"{topic}.dlq",
                                       kafka_partitions=2).kafka))
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    try:
        for n in range(650):
            producer.send(topic, key=str(n % 7).encode(), value=json.dumps({"n": n}).encode())
        producer.flush()
    finally:
        producer.close()
    events = read_topic(stack.bootstrap_servers, topic, 10)
    assert sorted(e["n"] for e in events) == list(range(650))
    for key in range(7):  # per key (one partition): log order
        ns = [e["n"] for e in events if e["n"] % 7 == key]
        assert ns == sorted(ns)


async def test_single_active_relay_and_takeover(stack: Stack, tmp_path: Path,
                                                database_url: str) -> None:
    env = isolated_env(stack.env, tmp_path / "data", HANDWERK_RELAY_LEASE_TTL_S="2",
                       HANDWERK_DATABASE_URL=database_url)
    engine = create_engine(database_url)
    await run_migrations(engine)
    sessions = session_factory(engine)
    store = ProjectStore(sessions)
    first = HandwerkProcess(["relay"], env, tmp_path / "relay1.log").start()
    second: HandwerkProcess | None = None
    try:
        async def holder() -> str | None:
            async with sessions() as session:
                lease = await session.get(RelayLease, "relay")
                return lease.holder if lease and lease.expires_at > 0 else None

        async def unpublished() -> int:
            async with sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(OutboxRow)
                                                .where(OutboxRow.published_at.is_(None))) or 0)

        first_holder = await async_wait_until(holder, timeout=60, message="first relay holds lease")
        assert first_holder.startswith(str(first.process.pid))  # type: ignore[union-attr]
        second = HandwerkProcess(["relay"], env, tmp_path / "relay2.log").start()
        rows = [await store.create(FIELDS) for _ in range(20)]
        for row in rows[:5]:
            await store.update(row.id, FIELDS.model_copy(update={"final_price": 1.0}))
        await async_wait_until(lambda: _zero(unpublished), timeout=60, message="all published")
        assert await holder() == first_holder  # the standby never took over meanwhile

        first.signal(signal.SIGKILL)
        first.wait(10)
        more = [await store.create(FIELDS) for _ in range(10)]
        await async_wait_until(lambda: _zero(unpublished), timeout=60, message="standby publishes")
        second_holder = await holder()
        assert second_holder and second_holder.startswith(str(second.process.pid))  # type: ignore[union-attr]

        async with sessions() as session:
            outbox = [json.loads(e) for e in (await session.scalars(
                select(OutboxRow.event).order_by(OutboxRow.seq))).all()]
        assert len(outbox) == 35
        events = read_topic(env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"], env["HANDWERK_KAFKA_TOPIC"], 35)
        # At least once, not exactly once: the design promises no more (a relay killed
        # between ack and mark republishes its batch), and a slow machine may produce that.
        assert_at_least_once_in_order(events, outbox)
        assert {e["subject"] for e in events} == {r.id for r in rows + more}
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0
        await engine.dispose()


async def _zero(check: object) -> bool:
    return await check() == 0  # type: ignore[operator,no-any-return]
