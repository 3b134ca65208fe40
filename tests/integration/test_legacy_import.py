"""Legacy import: every valid legacy row becomes a normal outbox write, exactly once across
re-runs; invalid rows are reported, never fatal; legacy vectors are cached for the consumer
only when a re-embedded sample proves them right. End to end, `handwerk import-legacy` runs
next to a live `handwerk serve` and every migrated project becomes findable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache
from handwerk.operations.legacy import (
    LEGACY_SOURCE,
    ImportReport,
    LegacyFormatError,
    import_legacy,
    legacy_project_id,
)
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, Project
from handwerk.outbox.store import ProjectStore
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.server import Server, isolated_env
from tests.legacy_db import make_legacy_db

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ProjectStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await run_migrations(engine)
    try:
        yield ProjectStore(session_factory(engine))
    finally:
        await engine.dispose()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[VectorCache]:
    with VectorCache(tmp_path / "vector-cache.sqlite") as vectors:
        yield vectors


async def outbox_counts(store: ProjectStore) -> dict[str, int]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(OutboxRow.project_id, func.count()).group_by(OutboxRow.project_id))
        return {pid: n for pid, n in rows.all()}


async def run_import(path: Path, store: ProjectStore, cache: VectorCache, embedder: Embedder,
                     **kwargs: Any) -> ImportReport:
    return await import_legacy(path, store, cache, model_name=embedder.model_name,
                               dimension=embedder.dimension, embed=embedder.embed_documents,
                               **kwargs)


async def test_import_is_complete_reported_and_idempotent(
        tmp_path: Path, store: ProjectStore, cache: VectorCache, embedder: Embedder) -> None:
    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 50, embedder=embedder, broken=3)
    seen: list[tuple[int, int]] = []
    report = await run_import(legacy, store, cache, embedder, chunk=20,
                              progress=lambda done, total: seen.append((done, total)))

    assert (report.total, report.migrated, report.already_present, report.failed) == (50, 47, 0, 3)
    assert len(report.failed_samples) == 3
    reasons = " | ".join(reason for _, reason in report.failed_samples)
    assert "complexity" in reasons and "name" in reasons and "total_area_sqm" in reasons
    assert (report.vectors_reused, report.vectors_recomputed) == (47, 0)
    assert report.vectors_reusable and report.sample_min_cosine is not None
    assert report.sample_min_cosine >= 0.99, report.vector_check
    assert report.seconds > 0 and report.per_project_ms == pytest.approx(report.seconds * 1000 / 50)
    assert seen == [(20, 50), (40, 50), (50, 50)]  # one commit per chunk

    failed_ids = {legacy_id for legacy_id, _ in report.failed_samples}
    expected = {legacy_project_id(n) for n in range(1, 51) if n not in failed_ids}
    assert await outbox_counts(store) == dict.fromkeys(expected, 1)
    async with store.sessions() as session:
        events = [json.loads(e) for e in (await session.scalars(select(OutboxRow.event))).all()]
        rows = (await session.scalars(select(Project))).all()
    assert {e["source"] for e in events} == {LEGACY_SOURCE}
    assert all(e["version"] == 1 and e["data"]["id"] == e["subject"] for e in events)
    assert {r.id for r in rows} == expected
    assert min(r.created_at for r in rows).year == 2019  # the legacy creation time is kept

    # the consumer finds each project's vector under the hash of the text it would embed
    key = model_key(embedder.model_name, embedder.dimension)
    texts = {e["subject"]: project_text(e["data"]) for e in events}
    cached = cache.get_many(key, [text_hash(t) for t in texts.values()])
    assert len(cached) == len(set(map(text_hash, texts.values()))) == cache.count(key)
    some = list(texts.values())[:8]
    fresh = embedder.encode(some)
    for text, vector in zip(some, fresh, strict=True):
        stored = np.asarray(cached[text_hash(text)], dtype=np.float32)
        assert float(stored @ vector) > 0.999 and abs(float(np.linalg.norm(stored)) - 1) < 1e-4

    again = await run_import(legacy, store, cache, embedder, chunk=20)
    assert (again.migrated, again.already_present, again.failed) == (0, 47, 3)
    assert (again.vectors_reused, again.vectors_recomputed) == (0, 0)
    assert await outbox_counts(store) == dict.fromkeys(expected, 1)  # no event added


async def test_vectors_of_another_text_are_detected_and_not_cached(
        tmp_path: Path, store: ProjectStore, cache: VectorCache, embedder: Embedder) -> None:
    # the old service embedded only name and description
    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 30, embedder=embedder,
                            text_of=lambda p: f"{p['name']}. {p['description']}")
    report = await run_import(legacy, store, cache, embedder)
    assert (report.migrated, report.failed) == (30, 0)
    assert not report.vectors_reusable
    assert report.sample_min_cosine is not None and report.sample_min_cosine < 0.99
    assert "sample check failed" in report.vector_check
    assert (report.vectors_reused, report.vectors_recomputed) == (0, 30)
    assert cache.count() == 0
    assert len(await outbox_counts(store)) == 30  # the rows migrate all the same


async def test_other_model_missing_vectors_and_bad_files(
        tmp_path: Path, store: ProjectStore, cache: VectorCache, embedder: Embedder) -> None:
    with_vectors = make_legacy_db(tmp_path / "a.sqlite", 10, embedder=embedder)
    other = await run_import(with_vectors, store, cache, embedder, legacy_model="acme/other-model")
    assert other.migrated == 10 and not other.vectors_reusable and other.vectors_recomputed == 10
    assert "acme/other-model" in other.vector_check and other.sample_min_cosine is None
    assert cache.count() == 0

    without = make_legacy_db(tmp_path / "b.sqlite", 10, seed=8)  # ids 1..10 again: same projects
    bare = await run_import(without, store, cache, embedder)
    assert (bare.migrated, bare.already_present) == (0, 10)
    assert "no vectors" in bare.vector_check

    not_legacy = tmp_path / "c.sqlite"
    not_legacy.write_bytes(b"not a database at all" * 100)
    for path in (not_legacy, tmp_path / "absent.sqlite"):
        with pytest.raises(LegacyFormatError):
            await run_import(path, store, cache, embedder)


# --- end to end: the CLI next to a running server ---------------------------------------

@pytest.fixture(scope="module")
def server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # the legacy system embedded with MiniLM: an index of that model reuses its vectors (an
    # e5 index, the default, re-embeds them: test_the_live_generations_model_decides_reuse)
    folder = tmp_path_factory.mktemp("legacy")
    srv = Server(isolated_env(stack.env, folder / "data", HANDWERK_MODEL_PATH="bundled"),
                 folder / "serve.log").start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not shut down cleanly ({code}):\n{srv.log_tail()}"


def import_cli(server: Server, legacy: Path, *options: str,
               env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "handwerk", "import-legacy", str(legacy), "--json",
                           *options],
                          env=env or server.env, capture_output=True, text=True, timeout=180)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_cli_import_next_to_a_running_server(server: Server, embedder: Embedder,
                                             tmp_path: Path) -> None:
    count, broken = 120, 2
    legacy = make_legacy_db(tmp_path / "legacy.sqlite", count, embedder=embedder, broken=broken)
    code, report = import_cli(server, legacy)
    assert code == 1, report  # some rows failed
    assert (report["total"], report["migrated"], report["failed"]) == (count, count - broken, broken)
    assert report["vectors_reused"] == count - broken, report["vector_check"]
    failed_ids = {legacy_id for legacy_id, _ in report["failed_samples"]}
    ids = [legacy_project_id(n) for n in range(1, count + 1) if n not in failed_ids]
    data_dir = Path(server.env["HANDWERK_DATA_DIR"])
    with VectorCache(data_dir / "vector-cache.sqlite") as cache:
        assert cache.count() > 0

    with server.client() as http:
        def all_indexed() -> bool:
            points = http.get("/api/v1/similarity/stats").json()["points_count"]
            return points >= len(ids)
        wait_until(all_indexed, timeout=180, interval=0.5, message="stats count every migrated project")

        def missing() -> list[str]:
            gone = []
            for pid in ids:
                response = http.get(f"/api/v1/projects/{pid}")
                if response.status_code != 200 or response.json()["indexed_version"] != 1:
                    gone.append(pid)
            return gone
        wait_until(lambda: not missing(), timeout=60, interval=0.5,
                   message="every migrated project readable and indexed")
        project = http.get(f"/api/v1/projects/{ids[0]}").json()
        hits = http.post("/api/v1/similarity/find-similar", json={
            "query": project["name"], "top_k": 20, "threshold": 0.0}).json()["results"]
        assert project["id"] in {h["id"] for h in hits}

        code, again = import_cli(server, legacy)
        assert code == 1 and (again["migrated"], again["already_present"]) == (0, count - broken)
        assert http.get("/api/v1/similarity/stats").json()["points_count"] == len(ids)


def test_the_live_generations_model_decides_reuse(server: Server, embedder: Embedder,
                                                  tmp_path: Path) -> None:
    """A data folder whose index was built with MiniLM (before e5 became the default) keeps
    that model, so MiniLM legacy vectors are reused although the configured model is now e5:
    import-legacy asks the live generation, as serve does."""
    import sqlite3

    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 4, seed=21, embedder=embedder)
    connection = sqlite3.connect(legacy)
    try:
        with connection:  # ids of their own, apart from the other tests' on this server
            connection.execute("UPDATE projects SET id = id + 7000")
    finally:
        connection.close()
    default_model = {k: v for k, v in server.env.items() if k != "HANDWERK_MODEL_PATH"}
    code, report = import_cli(server, legacy, env=default_model)
    assert code == 0 and report["migrated"] == 4, report
    assert report["vectors_reused"] == 4, report["vector_check"]


def test_cli_reimport_keeps_deletes_unless_restore_deleted(server: Server,
                                                           tmp_path: Path) -> None:
    """Issue 18 §1 through the CLI: a project deleted after the import stays deleted on a
    re-run (reported with its id); `--restore-deleted` brings it back and it is indexed."""
    import sqlite3

    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 3, seed=11)
    connection = sqlite3.connect(legacy)
    try:
        with connection:  # ids of their own, apart from the other test's on this server
            connection.execute("UPDATE projects SET id = id + 5000")
    finally:
        connection.close()
    ids = [legacy_project_id(n) for n in (5001, 5002, 5003)]
    code, first = import_cli(server, legacy)
    assert code == 0 and first["migrated"] == 3, first
    gone = ids[1]
    with server.client() as http:
        def indexed_at(pid: str, version: int) -> bool:
            response = http.get(f"/api/v1/projects/{pid}")
            return response.status_code == 200 and response.json()["indexed_version"] == version
        wait_until(lambda: all(indexed_at(pid, 1) for pid in ids), timeout=60, interval=0.3,
                   message="the imported projects indexed")
        assert http.delete(f"/api/v1/projects/{gone}").status_code == 200

        code, again = import_cli(server, legacy)
        assert code == 0, again
        assert (again["migrated"], again["already_present"], again["deleted_skipped"],
                again["deleted_ids"]) == (0, 2, 1, [gone])
        assert http.get(f"/api/v1/projects/{gone}").status_code == 404

        code, restored = import_cli(server, legacy, "--restore-deleted")
        assert code == 0, restored
        assert (restored["migrated"], restored["restored"], restored["restored_ids"],
                restored["deleted_skipped"]) == (1, 1, [gone], 0)
        wait_until(lambda: indexed_at(gone, 3), timeout=60, interval=0.3,
                   message="the restored project indexed above its tombstone")
        hits = http.post("/api/v1/similarity/find-similar", json={
            "query": http.get(f"/api/v1/projects/{gone}").json()["name"], "top_k": 20,
            "threshold": 0.0}).json()["results"]
        assert gone in {h["id"] for h in hits}


async def test_a_row_with_nul_fails_alone_on_both_databases(tmp_path: Path, database_url: str) -> None:
    """U+0000 cannot be stored on PostgreSQL: the row is counted failed, with the reason, and
    the rest of its chunk is imported (the database's error used to abort the chunk)."""
    import sqlite3

    legacy = make_legacy_db(tmp_path / "legacy.sqlite", 10)
    connection = sqlite3.connect(legacy)
    try:
        with connection:
            connection.execute("UPDATE projects SET description = ? WHERE id = 4", ("x\x00y",))
    finally:
        connection.close()
    engine = create_engine(database_url)
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    try:
        report = await import_legacy(legacy, store, None, model_name="m", dimension=384,
                                     embed=None, chunk=20)
        assert (report.total, report.migrated, report.failed) == (10, 9, 1)
        assert report.failed_samples[0][0] == 4 and "U+0000" in report.failed_samples[0][1]
        async with store.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Project)) == 9
    finally:
        await engine.dispose()
