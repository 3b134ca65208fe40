"""Search modes over HTTP on a real serve: dense, keyword and hybrid; the default; a live
generation built before keyword vectors existed (409 naming the reindex, dense by default);
the reindex that adds them reusing the dense vectors; a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from handwerk.settings import Settings
from tests.conftest import Stack
from tests.integration.server import Server, isolated_env
from tests.integration.test_reindex import finished, seed, start

pytestmark = pytest.mark.integration

FIND = "/api/v1/similarity/find-similar"


def find(http: httpx.Client, query: str, **body: Any) -> httpx.Response:
    return http.post(FIND, json={"query": query, "top_k": 5, "threshold": 0.0, **body})


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def forget_keywords(data_dir: Path) -> int:
    """Make every generation look built before keyword search: no analyzer recorded."""
    changed = 0
    for path in data_dir.rglob("meta.json"):
        meta = json.loads(path.read_text())
        if meta.get("keywords") is not None:
            meta["keywords"] = None
            path.write_text(json.dumps(meta))
            changed += 1
    return changed


def test_modes_an_old_generation_and_the_reindex_that_adds_keywords(
        stack: Stack, tmp_path: Path) -> None:
    env = isolated_env(stack.env, tmp_path / "data",
                       HANDWERK_COMPACTION_CHECK_INTERVAL_S="3600")
    server = Server(env, tmp_path / "serve.log").start()
    server.wait_ready()
    try:
        with server.client() as http:
            projects = seed(http, 30)
            target = projects[7]
            words = f"{target['name']} {target['wood_type']}"
            similarity: dict[str, float] = {}
            for mode in ("dense", "keyword", "hybrid"):
                response = find(http, target["description"], mode=mode)
                assert ids(response)[0] == target["id"], (mode, response.json())
                assert response.json()["mode"] == mode
                assert all(0 <= r["similarity"] <= 1 for r in response.json()["results"])
                similarity[mode] = response.json()["results"][0]["similarity"]
            # hybrid reports the same cosine similarity as dense (it ranks by the fusion)
            assert abs(similarity["hybrid"] - similarity["dense"]) < 1e-3, similarity
            keyword = find(http, words, mode="keyword").json()
            assert target["id"] in [r["id"] for r in keyword["results"]]
            assert keyword["results"][0]["similarity"] == 1.0  # relative to the best hit
            assert find(http, words).json()["mode"] == Settings().api.search_mode
            batch = http.post("/api/v1/similarity/batch-similar", json={
                "queries": [target["description"], words], "mode": "keyword", "threshold": 0})
            assert batch.status_code == 200, batch.text
            assert [r["mode"] for r in batch.json()["results"]] == ["keyword", "keyword"]
            bad = find(http, "Treppe", mode="fuzzy")
            assert bad.status_code == 422 and "mode" in bad.text
    finally:
        server.stop()

    assert forget_keywords(tmp_path / "data") >= 1
    server = Server(env, tmp_path / "serve.log").start()
    server.wait_ready()
    try:
        with server.client() as http:
            default = find(http, target["description"])
            assert default.status_code == 200 and default.json()["mode"] == "dense"
            assert ids(default)[0] == target["id"]
            for mode in ("keyword", "hybrid"):
                refused = find(http, target["description"], mode=mode)
                assert refused.status_code == 409, refused.text
                error = refused.json()["detail"][0]
                assert "handwerk reindex" in error["msg"] and error["loc"] == ["body", "mode"]
            refused = http.post("/api/v1/similarity/batch-similar", json={
                "queries": ["Treppe"], "mode": "hybrid"})
            assert refused.status_code == 409, refused.text

            start(http)  # from the topic: the dense vectors are reused, keywords added
            job = finished(http)
            assert job["state"] == "active", job
            assert job["progress"]["reused"] >= 25, job["progress"]
            response = find(http, target["description"], mode="hybrid")
            assert ids(response)[0] == target["id"]
            assert find(http, words).json()["mode"] == Settings().api.search_mode
    finally:
        server.stop()

    server = Server(env, tmp_path / "serve.log").start()  # keyword vectors survive a restart
    server.wait_ready()
    try:
        with server.client() as http:
            assert target["id"] in ids(find(http, words, mode="keyword"))
    finally:
        server.stop()
