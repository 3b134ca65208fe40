"""The event and dead-letter topics: created when missing (a restarted memory-only broker has
none), waited for at startup."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from handwerk.kafka.options import client_options
from handwerk.settings.groups import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(kafka: KafkaSettings) -> list[str]:
    """Create the event and DLQ topics if missing; return the ones created."""
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [kafka.topic, kafka.dlq_topic]
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(name, kafka.partitions, kafka.replication_factor)
                    for name in missing])
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


async def wait_for_topics(kafka: KafkaSettings, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_topics(kafka)
            return
        except Exception as e:  # broker not up yet: retry until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("topics not ready: %s", e)
            await asyncio.sleep(0.5)
