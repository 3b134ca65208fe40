"""Dead-letter publishing: the original bytes plus headers that say why and where from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from handwerk.consumer.batch import DeadLetter

MAX_REASON = 500


def dead_letter_headers(letter: DeadLetter, group: str) -> list[tuple[str, bytes]]:
    record = letter.record
    own = [
        ("dlq.reason", letter.reason[:MAX_REASON].encode()),
        ("dlq.original.topic", record.topic.encode()),
        ("dlq.original.partition", str(record.partition).encode()),
        ("dlq.original.offset", str(record.offset).encode()),
        ("dlq.time", datetime.now(UTC).isoformat().encode()),
        ("dlq.consumer.group", group.encode()),
    ]
    kept = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
    return kept + own


async def publish_dead_letters(producer: AIOKafkaProducer, topic: str, group: str,
                               letters: Sequence[DeadLetter]) -> None:
    """Send and await every ack: a dead letter must be durable before its offset is committed."""
    acks = [await producer.send(topic, value=letter.record.value, key=letter.record.key,
                                headers=dead_letter_headers(letter, group)) for letter in letters]
    for ack in acks:
        await ack
