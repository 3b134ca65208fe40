"""Deterministic crash between the index write and the offset commit (test-only fault
injection, HANDWERK_CRASH_POINT): the restarted consumer redoes the batch, the version guard
makes the redo harmless, and nothing is lost, with reconcile off (the pipeline alone)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from handwerk.process.crash_points import CONSUMER_AFTER_INDEX_WRITE
from tests.conftest import DOCKER, Stack
from tests.helpers import wait_until
from tests.integration.server import Server, isolated_env

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DOCKER, reason="the journal check reads the embedded run")]


def project(n: int) -> dict[str, object]:
    return {"name": f"Dielenboden {n}", "description": f"Massivholzdielen geölt, Raum {n}",
            "project_type": "flooring", "region": "Bremen", "total_area_sqm": 20.0 + n,
            "wood_type": "Lärche", "complexity": 2, "final_price": 5_000.0 + n}


def test_crash_after_index_write_before_commit_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    env = isolated_env(stack.env, tmp_path / "data", HANDWERK_APPLY_JOURNAL=str(journal),
                       HANDWERK_RECONCILE_ON_START="false", HANDWERK_RECONCILE_INTERVAL_S="0")
    doomed = Server({**env, "HANDWERK_CRASH_POINT": CONSUMER_AFTER_INDEX_WRITE},
                    tmp_path / "doomed.log").start()
    doomed.wait_ready()
    acknowledged: dict[str, int] = {}
    with doomed.client() as http:
        for n in range(12):
            try:
                response = http.post("/api/v1/projects/", json=project(n))
            except httpx.HTTPError:
                break  # the process died under us: this write's outcome is unknown
            acknowledged[response.json()["id"]] = response.json()["version"]
    assert doomed.wait(60) == -signal.SIGKILL, doomed.log_tail()
    assert acknowledged, "no write was acknowledged before the crash"
    first_pid = {json.loads(line)["pid"] for line in journal.read_text().splitlines()}
    assert len(first_pid) == 1, "the crashed process wrote the index before dying"

    server = Server(env, tmp_path / "after.log", port=doomed.port).start()
    try:
        server.wait_ready()
        with server.client() as http:
            def all_indexed() -> bool:
                for pid, version in acknowledged.items():
                    body = http.get(f"/api/v1/projects/{pid}").json()
                    if body["indexed_version"] != version:
                        return False
                return True
            wait_until(all_indexed, timeout=90, interval=0.3,
                       message="every acknowledged write indexed after the restart")
            stats = http.get("/api/v1/similarity/stats").json()
            listed = http.get("/api/v1/projects", params={"limit": 100}).json()["total"]
            assert stats["points_count"] == listed
    finally:
        assert server.stop() == 0
    # the redelivered batch was seen again and skipped by the guard, never applied backwards
    newest: dict[str, int] = {}
    for line in journal.read_text().splitlines():
        for pid, version, _kind in json.loads(line).get("applied", []):
            assert version >= newest.get(pid, 0), f"{pid} went backwards"
            newest[pid] = version
    assert sum(json.loads(line).get("skipped", 0) for line in journal.read_text().splitlines()) > 0
