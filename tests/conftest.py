"""Session fixtures: the real broker (local tansu, or Kafka + Qdrant containers when
HANDWERK_TEST_DOCKER=1) and the real model, each started once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from handwerk.embedding import Embedder
from handwerk.kafka import LocalBroker

DOCKER = os.environ.get("HANDWERK_TEST_DOCKER") == "1"


@dataclass(frozen=True)
class Stack:
    """Where the external services of a test run are; ``env`` configures a handwerk process."""

    bootstrap_servers: str
    env: dict[str, str] = field(default_factory=dict)
    broker: LocalBroker | None = None


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if DOCKER:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.qdrant import QdrantContainer

        with KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka, \
                QdrantContainer("qdrant/qdrant:v1.16.2") as qdrant:
            servers = kafka.get_bootstrap_server()
            url = f"http://{qdrant.get_container_host_ip()}:{qdrant.exposed_rest_port}"
            yield Stack(servers, {
                "HANDWERK_KAFKA_BOOTSTRAP_SERVERS": servers,
                "HANDWERK_KAFKA_ENABLE_IDEMPOTENCE": "true",
                "HANDWERK_INDEX_BACKEND": "qdrant", "HANDWERK_QDRANT_URL": url})
        return
    broker = LocalBroker()
    broker.start()
    try:
        yield Stack(broker.bootstrap_servers,
                    {"HANDWERK_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}, broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    model = Embedder(threads=2)
    model.load()
    try:
        yield model
    finally:
        model.close()
