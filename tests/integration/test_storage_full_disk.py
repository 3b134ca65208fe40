"""Really full filesystems (issue 18 §7), served by uvicorn: small tmpfs mounts, so needs root
(``mount -t tmpfs``) and skips, saying why, without it.

SQLite: the data folder on a 4 MB tmpfs, filled by writes until SQLite gets ENOSPC
(SQLITE_FULL). PostgreSQL: the project and outbox tables moved to a tablespace on a 4 MB tmpfs,
filled until the server answers SQLSTATE 53100 (disk_full). Either way every refused write
answers 507 in the one error shape on the same keep-alive connection (an exception that escaped
to the server used to close it: the "connection reset" seen in production), ``/readyz`` answers
on it too and names the reason, the episode is logged once, and once space is freed the next
write is stored and every acknowledged one is there, each with its outbox event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select, text

from handwerk.access.auth import Authenticator, AuthMode
from handwerk.access.keys import KeyStore
from handwerk.api.app import create_app
from handwerk.api.projects import ProjectService
from handwerk.kafka import free_port
from handwerk.outbox.models import OutboxRow, Project
from handwerk.process.runtime import Roles, Runtime
from handwerk.settings import Settings
from tests.unit.test_api_contract import PROJECT, FakeSearch
from tests.unit.test_storage_full import NoIndex, write_until_refused

CREATE = "/api/v1/projects/"
SIZE_MB = 4
STORAGE_LOGGER = "handwerk.process.storage"


def big() -> dict[str, object]:
    """About 9 KB per write (the row and its event), incompressible (PostgreSQL compresses)."""
    return {**PROJECT, "description": secrets.token_hex(4500)}


@pytest.fixture
def small_filesystem() -> Iterator[Path]:
    """A 4 MB tmpfs under /tmp (a folder other users may enter: the PostgreSQL server runs as
    ``postgres``)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs")
    mount_point = Path(tempfile.mkdtemp(prefix="handwerk-full-", dir="/tmp"))
    mount_point.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        mount_point.rmdir()


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The API (real store, no index or model) under uvicorn, and one keep-alive connection."""
    app = create_app(settings)
    runtime = Runtime(settings, Roles(api=False, relay=False, consumer=False, reconcile_on_start=False))
    async with runtime:
        app.state.runtime = runtime
        app.state.projects = ProjectService(runtime.require_store(), NoIndex(), 1.0)  # type: ignore[arg-type]
        app.state.search = FakeSearch()
        app.state.gate.authenticator = Authenticator(
            KeyStore(runtime.require_store().sessions), AuthMode.OFF, ttl_s=5)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.02)
            # One connection for everything: a reset would surface as a transport error.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         limits=httpx.Limits(max_connections=1)) as client:
                yield client, runtime
        finally:
            server.should_exit = True
            await serving


async def fill(client: httpx.AsyncClient, refusals: int = 20) -> list[str]:
    """Write until ``refusals`` writes were refused; the ids of the acknowledged ones."""
    return await write_until_refused(client, big, refusals=refusals, attempts=3000)


def episode(caplog: pytest.LogCaptureFixture) -> list[str]:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        "a traceback or an error was logged"
    return [r.levelname for r in caplog.records if r.name == STORAGE_LOGGER]


async def assert_recovered(client: httpx.AsyncClient, runtime: Runtime, acknowledged: list[str],
                           caplog: pytest.LogCaptureFixture) -> None:
    response = await client.post(CREATE, json=big())
    assert response.status_code == 201, response.text
    acknowledged.append(response.json()["id"])
    assert (await client.get("/readyz")).json()["components"]["storage"]["state"] == "ok"
    assert episode(caplog) == ["WARNING", "INFO"]
    async with runtime.require_store().sessions() as session:
        ids = set((await session.scalars(select(Project.id))).all())
        events = list((await session.scalars(select(OutboxRow.project_id))).all())
    assert ids == set(acknowledged)  # everything acknowledged, nothing refused
    assert sorted(events) == sorted(acknowledged)  # each with its event, and no other


async def test_a_full_filesystem_answers_507_on_a_live_connection_and_recovers(
        small_filesystem: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(data_dir=small_filesystem / "data", auth_mode="off")
    async with serving(settings) as (client, runtime):
        ballast = small_filesystem / "ballast"
        ballast.write_bytes(b"\0" * (SIZE_MB * 1024 * 1024 // 4))  # freed later to make room
        acknowledged = await fill(client)

        ready = await client.get("/readyz")  # the same connection: it was never closed
        assert ready.status_code == 200, ready.text
        storage = ready.json()["components"]["storage"]
        assert storage["state"] == "full" and "SQLITE_FULL" in storage["reason"]
        assert storage["free_bytes"] < 256 * 1024
        metrics = (await client.get("/metrics")).text
        [free] = [float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("handwerk_ml_data_dir_free_bytes ")]
        assert free < 256 * 1024
        assert episode(caplog) == ["WARNING"]

        ballast.unlink()
        await assert_recovered(client, runtime, acknowledged, caplog)


async def test_postgres_disk_full_answers_507_and_recovers(
        small_filesystem: Path, pg_url: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    postgres_user = pwd.getpwnam("postgres")
    os.chown(small_filesystem, postgres_user.pw_uid, postgres_user.pw_gid)
    tablespace = f"handwerk_full_{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, auth_mode="off")
    async with serving(settings) as (client, runtime):
        async with runtime.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(
                f"CREATE TABLESPACE {tablespace} LOCATION '{small_filesystem}'"))
            for table in ("projects", "outbox"):
                await autocommit.execute(text(f"ALTER TABLE {table} SET TABLESPACE {tablespace}"))
        try:
            acknowledged = await fill(client)
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            storage = ready.json()["components"]["storage"]
            assert storage["state"] == "full" and "53100" in storage["reason"], storage
            assert episode(caplog) == ["WARNING"]

            grown = await asyncio.to_thread(
                subprocess.run, ["mount", "-o", f"remount,size={SIZE_MB * 4}m",
                                 str(small_filesystem)], capture_output=True, text=True)
            assert grown.returncode == 0, grown.stderr
            await assert_recovered(client, runtime, acknowledged, caplog)
        finally:
            async with runtime.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("projects", "outbox"):
                    await autocommit.execute(text(f"ALTER TABLE {table} SET TABLESPACE pg_default"))
                await autocommit.execute(text(f"DROP TABLESPACE {tablespace}"))
