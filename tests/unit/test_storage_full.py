"""A full disk is an answer, not a crash (issue 18 §7).

Storage exhaustion is recognised by its code, never by its message: SQLite's SQLITE_FULL
(``sqlite_errorcode``), PostgreSQL's SQLSTATE 53100 (disk_full), errno ENOSPC/EDQUOT. A write
refused for lack of space answers 507 in the one error shape, without a traceback and without
closing the connection; the episode is logged once when it starts and once when it ends;
``/readyz`` keeps answering and names the reason in ``components.storage``; once space is back
the next write succeeds and everything acknowledged is there.

Without root, the database is capped with ``PRAGMA max_page_count`` on every connection, so
writes hit a real SQLITE_FULL (a real full filesystem: tests/integration/test_storage_full_disk.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from handwerk.access.auth import Authenticator, AuthMode
from handwerk.access.keys import KeyStore
from handwerk.api.app import create_app
from handwerk.api.projects import ProjectService
from handwerk.index.protocol import IndexUnavailable
from handwerk.metrics import Metrics
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.process.runtime import Roles, Runtime
from handwerk.process.storage import StorageFull, StorageWatch, storage_exhausted
from handwerk.producer import relay as relay_module
from handwerk.producer.relay import Relay
from handwerk.settings import Settings
from tests.helpers import async_wait_until
from tests.unit.test_api_contract import PROJECT, FakeProjects, FakeSearch, assert_error

CREATE = "/api/v1/projects/"


async def write_until_refused(client: httpx.AsyncClient, body: Callable[[], dict[str, Any]], *,
                              refusals: int, attempts: int) -> list[str]:
    """Create projects until ``refusals`` were refused, each a 507 in the one error shape; the
    ids of the acknowledged ones (at least one: the cap must leave room for a write)."""
    acknowledged: list[str] = []
    refused = 0
    for _ in range(attempts):
        response = await client.post(CREATE, json=body())
        if response.status_code == 201:
            acknowledged.append(response.json()["id"])
            continue
        [item] = assert_error(response, 507)
        assert item["type"] == "insufficient_storage"
        refused += 1
        if refused == refusals:
            break
    assert acknowledged and refused == refusals, (len(acknowledged), refused)
    return acknowledged
STORAGE_LOGGER = "handwerk.process.storage"


# --- recognised by code ---------------------------------------------------------------------

def _real_sqlite_full(tmp_path: Path) -> sqlite3.OperationalError:
    connection = sqlite3.connect(tmp_path / "capped.db")
    try:
        connection.execute("CREATE TABLE t (x BLOB)")
        connection.commit()
        connection.execute("PRAGMA max_page_count = 3")
        with pytest.raises(sqlite3.OperationalError) as refused:
            for _ in range(10):
                connection.execute("INSERT INTO t VALUES (?)", (b"x" * 4000,))
        return refused.value
    finally:
        connection.close()


def test_sqlite_full_is_recognised_by_its_code_and_through_sqlalchemy(tmp_path: Path) -> None:
    error = _real_sqlite_full(tmp_path)
    assert error.sqlite_errorcode == sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    assert storage_exhausted(error) is not None
    wrapped = OperationalError("INSERT ...", {}, error)
    assert "SQLITE_FULL" in (storage_exhausted(wrapped) or "")
    try:  # the chain, as a boundary that wraps it would leave it
        raise RuntimeError("wrapped") from wrapped
    except RuntimeError as outer:
        assert storage_exhausted(outer) is not None


def test_the_message_alone_is_not_enough() -> None:
    """The same text with another code (or none) is some other failure: never by text."""
    assert storage_exhausted(sqlite3.OperationalError("database or disk is full")) is None
    locked = sqlite3.OperationalError("database or disk is full")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert storage_exhausted(OperationalError("UPDATE ...", {}, locked)) is None
    assert storage_exhausted(OSError(errno.EACCES, "No space left on device")) is None
    assert storage_exhausted(ValueError("No space left on device")) is None


def test_postgres_disk_full_is_recognised_by_sqlstate() -> None:
    disk_full = asyncpg.exceptions.DiskFullError("could not extend file: No space left on device")
    assert disk_full.sqlstate == "53100"
    assert "53100" in (storage_exhausted(disk_full) or "")

    @dataclass
    class AdaptedError(Exception):  # what SQLAlchemy's asyncpg adapter puts in ``orig``
        sqlstate: str

    assert storage_exhausted(OperationalError("INSERT ...", {}, AdaptedError("53100"))) is not None
    out_of_memory = AdaptedError("53200")
    assert storage_exhausted(OperationalError("INSERT ...", {}, out_of_memory)) is None


def test_enospc_and_quota_are_recognised_by_errno() -> None:
    assert "ENOSPC" in (storage_exhausted(OSError(errno.ENOSPC, "whatever")) or "")
    assert storage_exhausted(OSError(errno.EDQUOT, "whatever")) is not None
    try:
        raise IndexUnavailable("flush failed") from OSError(errno.ENOSPC, "No space left on device")
    except IndexUnavailable as e:
        assert storage_exhausted(e) is not None


def test_an_episode_ends_when_every_refused_writer_stored_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The relay's update in place may fit where the API's inserts do not: its stored mark
    must not end an episode in which the API's writes are still refused."""
    caplog.set_level(logging.INFO)
    watch = StorageWatch(tmp_path)
    watch.wrote()  # nothing to end
    watch.refused("database or disk is full (SQLITE_FULL)")
    watch.refused("database or disk is full (SQLITE_FULL)", writer="relay")
    watch.wrote(writer="relay")
    assert watch.full and watch.component()["refused_writes"] == 2
    watch.refused("database or disk is full (SQLITE_FULL)")
    watch.wrote()
    assert not watch.full and watch.component() == {"state": "ok",
                                                   "free_bytes": watch.free_bytes()}
    assert [r.levelname for r in _storage_records(caplog)] == ["WARNING", "INFO"]


# --- the free-bytes gauge -------------------------------------------------------------------

def _samples(metrics: Metrics, name: str) -> list[float]:
    return [s.value for m in metrics.registry.collect() if m.name == name for s in m.samples]


def test_free_bytes_gauge_reports_the_data_folder_filesystem(tmp_path: Path) -> None:
    metrics = Metrics()
    assert _samples(metrics, "handwerk_ml_data_dir_free_bytes") == []  # nothing bound: no 0
    metrics.data_dir_free_bytes.bind(tmp_path)
    [free] = _samples(metrics, "handwerk_ml_data_dir_free_bytes")
    assert abs(free - shutil.disk_usage(tmp_path).free) < 64 * 1024 * 1024
    metrics.data_dir_free_bytes.bind(tmp_path / "missing")  # unreadable: no sample, no error
    assert _samples(metrics, "handwerk_ml_data_dir_free_bytes") == []


# --- the answer ------------------------------------------------------------------------------

class FailingProjects(FakeProjects):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def create(self, fields: Any, wait_s: float | None) -> Any:
        raise self.error


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(Settings(data_dir=tmp_path, auth_mode="off"))
    app.state.search = FakeSearch()
    client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
    yield app, client
    client.close()


@pytest.mark.parametrize("error", [
    StorageFull("database or disk is full (SQLITE_FULL)"),
    OSError(errno.ENOSPC, "No space left on device"),
    OperationalError("INSERT ...", {}, asyncpg.exceptions.DiskFullError("disk full")),
], ids=["store", "enospc", "postgres"])
def test_storage_exhaustion_answers_507_in_the_one_shape(
        app_client: tuple[FastAPI, TestClient], error: Exception) -> None:
    app, client = app_client
    app.state.projects = FailingProjects(error)
    response = client.post(CREATE, json=PROJECT)
    [item] = assert_error(response, 507)
    assert item["type"] == "insufficient_storage"
    assert "No space" not in item["msg"] and "SQLITE" not in item["msg"]  # never internals


def test_other_os_errors_stay_internal_errors(app_client: tuple[FastAPI, TestClient]) -> None:
    app, client = app_client
    app.state.projects = FailingProjects(OSError(errno.EACCES, "Permission denied"))
    [item] = assert_error(client.post(CREATE, json=PROJECT), 500)
    assert item["type"] == "internal_error"


def test_the_openapi_document_lists_507_on_writes(tmp_path: Path) -> None:
    paths = create_app(Settings(data_dir=tmp_path)).openapi()["paths"]
    assert "507" in paths[CREATE]["post"]["responses"]
    assert "507" in paths["/api/v1/projects/{project_id}"]["put"]["responses"]
    assert "507" in paths["/api/v1/projects/{project_id}"]["delete"]["responses"]


# --- end to end on a capped SQLite database ---------------------------------------------------

class NoIndex:
    async def get_states(self, ids: Sequence[str]) -> dict[str, Any]:
        return {}


@dataclass
class Capped:
    client: httpx.AsyncClient
    runtime: Runtime
    pages: dict[str, int] = field(default_factory=dict)

    def lift(self) -> None:
        self.pages["max"] = 1_000_000


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[Capped]:
    settings = Settings(data_dir=tmp_path / "data", auth_mode="off")
    app = create_app(settings)
    runtime = Runtime(settings, Roles(api=False, relay=False, consumer=False, reconcile_on_start=False))
    async with runtime:
        pages: dict[str, int] = {}

        @event.listens_for(runtime.engine.sync_engine, "checkout")
        def _cap(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {pages.get('max', 1_000_000)}")
            cursor.close()

        async with runtime.engine.connect() as connection:
            used = (await connection.exec_driver_sql("PRAGMA page_count")).scalar_one()
        pages["max"] = used + 6
        app.state.runtime = runtime
        app.state.projects = ProjectService(runtime.require_store(), NoIndex(), 1.0)  # type: ignore[arg-type]
        app.state.search = FakeSearch()
        app.state.gate.authenticator = Authenticator(
            KeyStore(runtime.require_store().sessions), AuthMode.OFF, ttl_s=5)
        # raise_app_exceptions: an exception that escaped to the server (a traceback and a
        # closed connection under uvicorn) fails the test here.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://localhost") as client:
            yield Capped(client, runtime, pages)


def _storage_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == STORAGE_LOGGER]


async def test_a_full_database_answers_507_logs_once_and_recovers(
        capped: Capped, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    big = {**PROJECT, "description": "Eiche " * 1600}
    acknowledged = await write_until_refused(capped.client, lambda: big, refusals=10, attempts=60)

    ready = await capped.client.get("/readyz")
    assert ready.status_code == 200, ready.text  # reads and searches are served: still ready
    storage = ready.json()["components"]["storage"]
    assert storage["state"] == "full"
    assert "SQLITE_FULL" in storage["reason"]
    assert storage["refused_writes"] == 10
    assert isinstance(storage["free_bytes"], int)

    page = await capped.client.get("/api/v1/projects", params={"limit": 500})
    assert page.status_code == 200 and page.json()["total"] == len(acknowledged)  # reads work

    episode = _storage_records(caplog)
    assert [r.levelname for r in episode] == ["WARNING"], [r.getMessage() for r in episode]
    assert "SQLITE_FULL" in episode[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]

    capped.lift()
    response = await capped.client.post(CREATE, json=big)
    assert response.status_code == 201, response.text
    acknowledged.append(response.json()["id"])
    episode = _storage_records(caplog)
    assert [r.levelname for r in episode] == ["WARNING", "INFO"]
    assert "10 writes refused" in episode[1].getMessage()
    assert (await capped.client.get("/readyz")).json()["components"]["storage"]["state"] == "ok"

    async with capped.runtime.require_store().sessions() as session:
        ids = set((await session.scalars(select(Project.id))).all())
        events = list((await session.scalars(select(OutboxRow.project_id))).all())
    assert ids == set(acknowledged)  # everything acknowledged, nothing refused
    assert sorted(events) == sorted(acknowledged)  # each with its event, and no other

    assert "handwerk_ml_data_dir_free_bytes " in (await capped.client.get("/metrics")).text


# --- the relay: a full disk pauses it, never crashes it ------------------------------------------

class AckingProducer:
    """Stands in for AIOKafkaProducer: acknowledges every record at once."""

    def __init__(self, **_options: Any) -> None:
        self.sent = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, **_record: Any) -> asyncio.Future[None]:
        self.sent += 1
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


async def test_the_relay_waits_out_a_full_database_without_crashing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(data_dir=tmp_path, relay_poll_interval_s=0.05,
                        kafka_bootstrap_servers="127.0.0.1:1")  # never reached: a stand-in producer
    engine = create_engine(settings.resolved_database_url)
    try:
        await run_migrations(engine)
        sessions = session_factory(engine)
        await ProjectStore(sessions).create(ProjectFields(**PROJECT))

        async def no_topics(_kafka: object) -> list[str]:
            return []  # nothing created

        monkeypatch.setattr(relay_module, "ensure_topics", no_topics)
        watch = StorageWatch(tmp_path)
        relay = Relay(settings, sessions, Metrics(), storage=watch, producer_factory=AckingProducer)
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        refusals = 3
        mark = relay.mark_published

        async def mark_on_a_full_disk(seqs: Sequence[int], token: int) -> bool:
            nonlocal refusals
            if refusals:
                refusals -= 1
                raise OperationalError("UPDATE outbox ...", {}, full)
            return await mark(seqs, token)

        monkeypatch.setattr(relay, "mark_published", mark_on_a_full_disk)
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))

        async def published() -> bool:
            assert not running.done(), running.exception()  # crashed: it must wait it out
            async with sessions() as session:
                return bool(await session.scalar(
                    select(OutboxRow.seq).where(OutboxRow.published_at.is_not(None))))

        await async_wait_until(published, timeout=30, message="the row marked published")
        stop.set()
        await running
        assert not watch.full  # its own stored mark ended the episode it alone was in
        episode = _storage_records(caplog)
        assert [r.levelname for r in episode] == ["WARNING", "INFO"]
        assert "3 writes refused" in episode[1].getMessage()
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    finally:
        await engine.dispose()
