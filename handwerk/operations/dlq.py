"""Operator tools for the dead-letter topic: list with reasons, replay after a fix."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from handwerk.kafka import client_options, producer_options
from handwerk.settings import Settings

REPLAY_GROUP_SUFFIX = ".dlq-replay"
_IDLE_MS = 2000


async def _drain(consumer: AIOKafkaConsumer, limit: int) -> list[Any]:
    """Read until one idle poll or ``limit`` (end_offsets() is unreliable on tansu)."""
    records: list[Any] = []
    while len(records) < limit:
        batch = await consumer.getmany(timeout_ms=_IDLE_MS, max_records=limit - len(records))
        if not batch:
            break
        records.extend(r for rs in batch.values() for r in rs)
    return records


def _describe(record: Any) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    value = record.value or b""
    return {"partition": record.partition, "offset": record.offset,
            "key": record.key.decode(errors="replace") if record.key else None,
            "reason": headers.get("dlq.reason"),
            "original": f"{headers.get('dlq.original.topic')}/"
                        f"{headers.get('dlq.original.partition')}@{headers.get('dlq.original.offset')}",
            "time": headers.get("dlq.time"), "bytes": len(value),
            "preview": value[:200].decode(errors="replace")}


async def read_dead_letters(settings: Settings, *, limit: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(settings.kafka.dlq_topic, **client_options(settings.kafka),
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        return [_describe(r) for r in await _drain(consumer, limit)]
    finally:
        await consumer.stop()


async def replay_dead_letters(settings: Settings, *, limit: int) -> int:
    """Each DLQ record is replayed once (progress is committed in a replay group)."""
    consumer = AIOKafkaConsumer(settings.kafka.dlq_topic, **client_options(settings.kafka),
                                group_id=settings.consumer.group + REPLAY_GROUP_SUFFIX,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(**producer_options(settings))
    await consumer.start()
    await producer.start()
    try:
        records = await _drain(consumer, limit)
        acks = [await producer.send(settings.kafka.topic, value=r.value, key=r.key,
                                    headers=[(k, v) for k, v in (r.headers or ())
                                             if not k.startswith("dlq.")])
                for r in records]
        for ack in acks:
            await ack
        if records:
            await consumer.commit()
        return len(records)
    finally:
        await consumer.stop()
        await producer.stop()
