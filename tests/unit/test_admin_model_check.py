"""The model check of ``POST /api/v1/admin/reindex`` (issue 19 #11a): it reads the folder a
request names, so it runs off the event loop under a timeout (a FIFO in the folder stalled
every request, and the consumer, until it timed out); every way a spec can fail is a 404 with
one text, which tells neither whether a folder exists nor what is in it."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from handwerk.api.app import create_app
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.unit.test_api_contract import FakeProjects, FakeSearch, assert_error

REINDEX, GENERATIONS = "/api/v1/admin/reindex", "/api/v1/admin/generations"


class FakeManager:
    """Stands in for ReindexManager: records the reindexes started."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(self, **job: Any) -> None:
        self.started.append(job)

    def progress(self) -> dict[str, Any]:
        return {"state": "running"}

    def generations(self) -> list[dict[str, Any]]:
        return []


def admin_client(tmp_path: Path) -> tuple[httpx.AsyncClient, FakeManager]:
    app = create_app(Settings(data_dir=tmp_path, auth_mode="off"))
    manager = FakeManager()
    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.runtime = SimpleNamespace(metrics=Metrics(), reindex=manager)
    # A loopback Host: allowed with or without configured hosts.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000"), manager


@pytest.fixture
def fifo_model(tmp_path: Path) -> Iterator[Path]:
    """A sentence-transformers folder whose pooling config is a FIFO: reading it blocks until
    a writer comes, which a thread here does after 3 s (so a blocked loop ends, and the
    check's own thread is never left behind)."""
    folder = tmp_path / "fifo-model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "tokenizer.json").write_text("{}")
    fifo = folder / "1_Pooling" / "config.json"
    os.mkfifo(fifo)
    release_now = threading.Event()

    def release() -> None:  # opens the FIFO for writing once a reader waits on it
        release_now.wait(3.0)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.05)
                continue
            os.write(fd, b"{}")
            os.close(fd)
            return

    writer = threading.Thread(target=release, daemon=True)
    writer.start()
    yield folder
    release_now.set()
    writer.join(6)


async def test_a_fifo_in_the_model_folder_blocks_no_other_request(
        tmp_path: Path, fifo_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handwerk.api.routers.admin.MODEL_CHECK_TIMEOUT_S", 0.5, raising=False)
    client, manager = admin_client(tmp_path)
    async with client:
        started = time.monotonic()
        check = asyncio.create_task(client.post(REINDEX, json={"model": str(fifo_model)}))
        await asyncio.sleep(0.1)
        other = await client.get(GENERATIONS)
        other_s = time.monotonic() - started
        response = await check
    assert other.status_code == 200
    assert other_s < 1.5, f"another request waited {other_s:.1f} s on the model check"
    errors = assert_error(response, 404)
    assert str(fifo_model) not in errors[0]["msg"] and manager.started == []


@pytest.mark.parametrize("spec", ["~nosuchuser/model", "~nosuchuser"])
async def test_a_home_folder_of_nobody_is_404_not_500(tmp_path: Path, spec: str) -> None:
    client, manager = admin_client(tmp_path)
    async with client:
        errors = assert_error(await client.post(REINDEX, json={"model": spec}), 404)
    assert errors[0]["type"] == "not_found" and manager.started == []


async def test_the_answer_does_not_tell_whether_a_folder_exists(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "modules.json").write_text("{not json")
    specs = [tmp_path / "missing", tmp_path / "empty", tmp_path / "a-file", tmp_path / "broken",
             tmp_path / ("x" * 300)]
    client, manager = admin_client(tmp_path)
    async with client:
        answers = [assert_error(await client.post(REINDEX, json={"model": str(spec)}), 404)
                   for spec in specs]
    assert all(answer == answers[0] for answer in answers), answers
    assert str(tmp_path) not in answers[0][0]["msg"] and manager.started == []


async def test_a_model_that_resolves_is_started(tmp_path: Path) -> None:
    client, manager = admin_client(tmp_path)
    async with client:
        response = await client.post(REINDEX, json={"model": "e5"})
    assert response.status_code == 202, response.text
    assert manager.started and manager.started[0]["model"] == "e5"
