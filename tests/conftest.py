"""Session fixtures: the real broker (local tansu, or Kafka + Qdrant containers when
HANDWERK_TEST_DOCKER=1), the real model and a real PostgreSQL server, each started once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from handwerk.embedding.embedder import Embedder
from handwerk.kafka import LocalBroker
from tests.postgres import REQUIRE_ENV as REQUIRE_POSTGRES
from tests.postgres import PostgresServer, PostgresUnavailable

# Tests load models in this process, not through the `handwerk` entry point, so set the process
# defaults it sets (see _library_environment in handwerk/cli/main.py for why), before any model loads:
# never download model weights, and idle OpenMP workers sleep instead of spinning.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; tests take a fresh database each
    (``database_url``). Missing binaries skip, unless HANDWERK_REQUIRE_POSTGRES=1 (`make
    test`), where they fail: CI can never pass by skipping the PostgreSQL suites."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as e:
        if os.environ.get(REQUIRE_POSTGRES) == "1":
            pytest.fail(f"{e}; {REQUIRE_POSTGRES}=1 requires it")
        pytest.skip(str(e))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The suites that touch the database run against both: a SQLite file in the test's
    folder, and a fresh database on the session's PostgreSQL server (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = await server.create_database()
    try:
        yield url
    finally:
        await server.drop_database(url)


@pytest.fixture
async def pg_url(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh database on the session's PostgreSQL server, dropped afterwards."""
    url = await postgres.create_database()
    try:
        yield url
    finally:
        await postgres.drop_database(url)
