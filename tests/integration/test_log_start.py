"""The log start of each partition, as a rollback's catch-up reads it before replaying from a
generation's stored offsets (``replay.read_log_starts``), against the real broker: the local
tansu, or Apache Kafka under Docker where DeleteRecords moves it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError

from handwerk.generations.replay import read_log_starts, replay_gaps
from handwerk.kafka import ensure_topics
from handwerk.settings import Settings
from tests.conftest import DOCKER, Stack

pytestmark = pytest.mark.integration


async def topic_with_records(stack: Stack) -> Settings:
    name = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, kafka_partitions=2,
                        kafka_topic=f"start.{name}", kafka_dlq_topic=f"start.{name}.dlq")
    await ensure_topics(settings.kafka)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition, n in {0: 8, 1: 3}.items():
            for i in range(n):
                await producer.send_and_wait(settings.kafka.topic, f"r{i}".encode(), key=b"k",
                                             partition=partition)
    finally:
        await producer.stop()
    return settings


async def delete_records(settings: Settings, partition: int, before: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await asyncio.wait_for(admin.delete_records(
            {TopicPartition(settings.kafka.topic, partition): RecordsToDelete(before)}), 15)
    finally:
        await admin.close()


async def test_log_starts_are_read_from_the_broker(stack: Stack) -> None:
    settings = await topic_with_records(stack)
    assert await read_log_starts(settings, [0, 1]) == {0: 0, 1: 0}
    assert replay_gaps({0: 2, 1: 0}, await read_log_starts(settings, [0, 1])) == {}
    if DOCKER:  # Apache Kafka moves the log start on DeleteRecords (the local broker cannot)
        await delete_records(settings, 0, 5)
        starts = await read_log_starts(settings, [0, 1])
        assert starts == {0: 5, 1: 0}
        assert replay_gaps({0: 2, 1: 0}, starts) == {0: (2, 5)}
        assert replay_gaps({}, starts) == {0: (0, 5)}


@pytest.mark.skipif(DOCKER, reason="a fact about the local broker")
async def test_the_local_broker_cannot_move_a_log_start(stack: Stack) -> None:
    """tansu 0.6.0 closes the connection on DeleteRecords and keeps the log start at 0 (it
    does not apply retention either): the refusal of a rollback past the log start is proven
    in tests/contract/test_rollback_past_retention.py with the log starts given."""
    settings = await topic_with_records(stack)
    with pytest.raises((KafkaError, TimeoutError)):
        await delete_records(settings, 0, 5)
    assert await read_log_starts(settings, [0, 1]) == {0: 0, 1: 0}
