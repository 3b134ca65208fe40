"""One owner per data folder, and reconcile repairing what a lost (memory-only) broker and
out-of-band database changes leave behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, update

from handwerk.outbox.database import create_engine, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from tests.conftest import DOCKER, Stack
from tests.helpers import wait_until
from tests.integration.server import HandwerkProcess, Server, isolated_env

pytestmark = pytest.mark.integration

FIELDS = {"name": "Einbauschrank Eiche", "description": "Einbauschrank unter der Dachschräge "
          "mit Schiebetüren", "project_type": "wardrobe", "region": "Berlin",
          "total_area_sqm": 4.0, "wood_type": "Eiche", "complexity": 2, "final_price": 6_800.0}


def reconcile_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handwerk", "reconcile", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_second_process_on_a_data_folder_fails_fast(stack: Stack, tmp_path: Path) -> None:
    env = isolated_env(stack.env, tmp_path / "data")
    first = Server(env, tmp_path / "first.log").start()
    try:
        first.wait_ready()
        second = subprocess.run([sys.executable, "-m", "handwerk", "serve", "--port", "0"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "in use by pid" in second.stderr
        also = reconcile_cli(env)
        assert also.returncode == 2 and "in use" in also.stderr
        with first.client() as http:  # the holder is untouched and still writes and indexes
            created = http.post("/api/v1/projects/", params={"wait_indexed": 20}, json=FIELDS)
            assert created.json()["indexed_version"] == 1
    finally:
        assert first.stop() == 0


@pytest.mark.skipif(DOCKER, reason="simulates the memory-only local broker losing its log")
async def test_restart_with_a_fresh_broker_reconciles(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = isolated_env({}, data)  # no bootstrap servers: serve starts its own tansu broker
    env.pop("HANDWERK_KAFKA_BOOTSTRAP_SERVERS", None)
    server = Server(env, tmp_path / "serve1.log").start()
    server.wait_ready()
    with server.client() as http:
        kept = http.post("/api/v1/projects/", params={"wait_indexed": 20}, json=FIELDS).json()
        orphan = http.post("/api/v1/projects/", params={"wait_indexed": 20},
                           json={**FIELDS, "name": "Verwaist"}).json()
    server.kill()  # SIGKILL: its broker dies with it, and with it every unconsumed event

    engine = create_engine(f"sqlite+aiosqlite:///{data / 'handwerk.db'}")
    store = ProjectStore(session_factory(engine))
    try:
        added = await store.create(ProjectFields(**{**FIELDS, "name": "Nachgetragen"}))
        await store.update(kept["id"], ProjectFields(**{**FIELDS, "final_price": 7_777.0}))
        async with store.sessions.begin() as session:
            await session.execute(delete(Project).where(Project.id == orphan["id"]))
            # as if the old broker had acknowledged these, then lost them on restart
            await session.execute(update(OutboxRow).values(published_at=OutboxRow.created_at)
                                  .where(OutboxRow.published_at.is_(None)))
    finally:
        await engine.dispose()

    report = reconcile_cli(env)
    assert report.returncode == 0, report.stderr
    drift = json.loads(report.stdout)
    assert (drift["missing"], drift["stale"], drift["orphaned"]) == (1, 1, 1)
    assert drift["missing_ids"] == [added.id] and drift["orphaned_ids"] == [orphan["id"]]

    server = Server(env, tmp_path / "serve2.log").start()  # reconciles at startup
    try:
        server.wait_ready()
        with server.client() as http:
            def converged() -> bool:
                fresh = http.get(f"/api/v1/projects/{added.id}").json()
                price = http.get(f"/api/v1/projects/{kept['id']}").json()
                hits = http.post("/api/v1/similarity/find-similar", json={
                    "query": "Einbauschrank", "top_k": 50, "threshold": 0.0}).json()["results"]
                return (fresh["indexed_version"] == 1 and price["indexed_version"] == 2
                        and orphan["id"] not in {h["id"] for h in hits})
            wait_until(converged, timeout=60, message="reconcile repaired the index")
            stats = http.get("/api/v1/similarity/stats").json()
            assert stats["points_count"] == 2
            # the startup check found 3; a follow-up check keeps the gauge current (issue 18 §5)
            wait_until(lambda: http.get("/api/v1/similarity/stats").json()["index_drift"] == 0,
                       timeout=30, message="the drift gauge caught up")
    finally:
        assert server.stop() == 0
    after = json.loads(reconcile_cli(env).stdout)
    assert after["drift"] == 0


def test_readyz_and_healthz_say_what_they_check(stack: Stack, tmp_path: Path) -> None:
    server = Server(isolated_env(stack.env, tmp_path / "d"), tmp_path / "s.log").start()
    try:
        server.wait_ready()
        health = httpx.get(f"{server.url}/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["ready"] is True
        assert body["checks"] == {"database": True, "index": True, "index_writes": True,
                                  "background_tasks": True}
        assert body["components"]["indexer"] in ("live", "catching_up")
        assert body["components"]["tasks"] == {"relay": "running", "consumer-0": "running",
                                               "reconcile": "running", "lag-monitor": "running",
                                               "outbox-gauges": "running",
                                               "index-upkeep": "running"}
    finally:
        assert server.stop() == 0


def test_after_a_sigkill_search_and_writes_do_not_wait_for_the_group(
        stack: Stack, tmp_path: Path) -> None:
    """Regression (review #6.11): restarted after a SIGKILL, serve waited for the group to
    drop the dead member (a session timeout) before it reported ready. Searches and writes
    need neither: it is ready once database and index are open, and says the indexer is
    still joining; the write made meanwhile is indexed once the group settles."""
    env = isolated_env(stack.env, tmp_path / "d", HANDWERK_KAFKA_SESSION_TIMEOUT_MS="10000")
    first = Server(env, tmp_path / "first.log").start()
    first.wait_ready()
    first.kill()
    again = Server(env, tmp_path / "again.log", port=first.port).start()
    try:
        again.wait_ready(indexing=False)
        with again.client() as http:
            body = http.get("/readyz").json()
            assert body["ready"] and body["components"]["indexer"] == "joining"
            assert http.post("/api/v1/similarity/find-similar",
                             json={"query": "Küche"}).status_code == 200
            created = http.post("/api/v1/projects/", json=FIELDS).json()

            def indexed() -> bool:
                return bool(http.get(f"/api/v1/projects/{created['id']}").json()["indexed_version"])
            wait_until(indexed, timeout=60, message="indexed once the group settled")
            assert http.get("/readyz").json()["components"]["indexer"] in ("live", "catching_up")
    finally:
        assert again.stop() == 0


def test_a_headless_role_that_crashes_exits_non_zero(stack: Stack, tmp_path: Path) -> None:
    """Regression (review #6.6): `handwerk relay` whose task crashed kept running doing
    nothing, so no supervisor ever restarted it. Now the process exits with status 1."""
    import sqlite3

    env = isolated_env(stack.env, tmp_path / "d")
    relay = HandwerkProcess(["relay"], env, tmp_path / "relay.log").start()
    database = tmp_path / "d" / "handwerk.db"
    try:
        wait_until(lambda: database.exists() and _has_table(database, "relay_lease"),
                   timeout=60, message="relay started")
        with sqlite3.connect(database) as db:  # an operator's mistake: the outbox is gone
            db.execute("DROP TABLE outbox")
        assert relay.wait(60) == 1, relay.log_tail()
        assert "crashed" in relay.log_tail()
    finally:
        relay.kill()


def _has_table(database: Path, table: str) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() \
                is not None
    except sqlite3.Error:
        return False
