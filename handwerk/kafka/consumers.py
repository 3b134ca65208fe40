"""Stopping an aiokafka consumer cleanly, whatever aiokafka raises on the way out."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

log = logging.getLogger(__name__)


async def stop_consumer(client: AIOKafkaConsumer) -> None:
    """Stop a consumer, surviving aiokafka's own stray CancelledError (never ours)."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled ourselves
        # aiokafka 0.14: stop() awaits internal tasks it cancelled (the fetcher's retrying
        # fetches; a group-less consumer's committed-offsets reset routine) without
        # suppressing their CancelledError, and then skips closing the connections.
        log.debug("aiokafka raised its own CancelledError while stopping a consumer")
        await client._client.close()  # noqa: SLF001
    except Exception:
        log.debug("stopping a consumer failed", exc_info=True)
