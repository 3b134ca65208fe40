"""A deleted project never comes back (issue 18 §1), end to end on `handwerk serve`: real
broker, SQLite, Qdrant Edge, model, builder process. Stale upserts of a deleted project
reach the index after a backfill from the database, as a zombie write (a record delivered
again, an upstream re-send) and through a dead-letter replay."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from handwerk.contract.events import UPSERTED, build_event, encode_event
from handwerk.operations.dlq import replay_dead_letters
from handwerk.settings import Settings
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.test_reindex import finished, seed, serving, start, stats

pytestmark = pytest.mark.integration

FIELDS = ("name", "description", "project_type", "region", "total_area_sqm", "wood_type",
          "complexity", "final_price")
_COUNTER = re.compile(r"^handwerk_ml_events_(?:applied|skipped)_total\{[^}]*\} ([0-9.e+]+)$",
                      re.MULTILINE)


def handled(http: httpx.Client) -> float:
    """Events the consumer applied or skipped so far (any reason): it moves once it read one."""
    return sum(float(v) for v in _COUNTER.findall(http.get("/metrics").text))


def stale_upsert(project: dict[str, Any]) -> dict[str, Any]:
    """The upsert the outbox wrote for ``project`` as the API answered it (same version, same
    data, the event time is the row's ``updated_at``)."""
    return build_event(event_type=UPSERTED, project_id=project["id"], version=project["version"],
                       data={"id": project["id"], **{k: project[k] for k in FIELDS},
                             "created_at": project["created_at"],
                             "updated_at": project["updated_at"]},
                       time=datetime.fromisoformat(project["updated_at"]))


async def send(servers: str, topic: str, event: dict[str, Any],
               headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode_event(event), key=event["subject"].encode(),
                                     headers=headers)
    finally:
        await producer.stop()


def found(http: httpx.Client, project: dict[str, Any]) -> bool:
    hits = http.post("/api/v1/similarity/find-similar", json={
        "query": project["description"], "top_k": 20, "threshold": 0.0}).json()["results"]
    return project["id"] in {h["id"] for h in hits}


def test_a_project_updated_and_deleted_just_before_a_backfill_stays_deleted(
        stack: Stack, tmp_path: Path) -> None:
    """The reviewer's sequence: a project is updated and deleted within the minute before a
    backfill's snapshot (the snapshot time less 60 s was the new generation's only guard, and
    the delete, before the snapshot, left no tombstone in it). The stale upsert of the update
    arrives afterwards: it must be refused, and so must the create replayed from the DLQ."""
    with serving(stack, tmp_path) as server, server.client() as http:
        gone = seed(http, 6)[0]
        body = {"name": "Eckbank Zirbe", "description": "Eckbank aus Zirbenholz mit Truhe",
                "project_type": "furniture", "region": "Tirol", "total_area_sqm": 3.0,
                "wood_type": "Zirbe", "complexity": 2, "final_price": 2_400.0}
        created = http.post("/api/v1/projects/", params={"wait_indexed": 30}, json=body).json()
        updated = http.put(f"/api/v1/projects/{created['id']}", params={"wait_indexed": 30},
                           json={**body, "final_price": 2_600.0}).json()
        assert updated["version"] == 2
        assert http.delete(f"/api/v1/projects/{created['id']}",
                           params={"wait_indexed": 30}).status_code == 200
        assert not found(http, created)

        live = stats(http)["generation"]
        start(http, source="db")
        job = finished(http)
        assert job["state"] == "active", job
        assert job["figures"]["snapshot_deletes"] == 1
        assert stats(http)["points_count"] == 6

        # a zombie write: the update's record delivered again after the backfill
        before = handled(http)
        topic = server.env["HANDWERK_KAFKA_TOPIC"]
        asyncio.run(send(stack.bootstrap_servers, topic, stale_upsert(updated)))
        wait_until(lambda: handled(http) > before, timeout=30, message="the zombie write read")
        # and the create, dead-lettered once, replayed by an operator
        before = handled(http)
        dlq = server.env["HANDWERK_KAFKA_DLQ_TOPIC"]
        asyncio.run(send(stack.bootstrap_servers, dlq, stale_upsert(created),
                         headers=[("dlq.reason", b"index unavailable")]))
        settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, kafka_topic=topic,
                            kafka_dlq_topic=dlq, consumer_group=server.env["HANDWERK_CONSUMER_GROUP"],
                            data_dir=tmp_path / "dlq-replay")
        assert asyncio.run(replay_dead_letters(settings, limit=10)) == 1
        wait_until(lambda: handled(http) > before, timeout=30, message="the DLQ replay read")

        assert not found(http, created)
        assert stats(http)["points_count"] == 6

        # a rollback to the generation the backfill replaced: it catches up from its own
        # offsets, deletes included, and the stale upserts stay refused there too
        assert http.delete(f"/api/v1/projects/{gone['id']}",
                           params={"wait_indexed": 30}).status_code == 200
        rollback = f"/api/v1/admin/generations/{live}/activate"
        assert wait_until(lambda: (r := http.post(rollback)).status_code != 409 and r,
                          timeout=60, interval=0.2, message="rollback accepted").status_code == 202
        job = finished(http)
        assert job["state"] == "active" and stats(http)["generation"] == live, job
        before = handled(http)
        for event in (stale_upsert(updated), stale_upsert(gone)):
            asyncio.run(send(stack.bootstrap_servers, topic, event))
        wait_until(lambda: handled(http) >= before + 2, timeout=30, message="both read")
        assert not found(http, created) and not found(http, gone)
        assert stats(http)["points_count"] == 5


def test_a_backfill_during_a_delete_storm_leaves_every_deleted_project_deleted(
        stack: Stack, tmp_path: Path) -> None:
    """Deletes just before the snapshot and while it runs; afterwards the last upsert of every
    deleted project arrives again. None of them comes back."""
    with serving(stack, tmp_path) as server, server.client() as http:
        projects = seed(http, 24)
        doomed = [http.put(f"/api/v1/projects/{p['id']}", json={
            **{k: p[k] for k in FIELDS}, "final_price": p["final_price"] + 1}).json()
            for p in projects[:12]]
        for p in doomed[:4]:
            assert http.delete(f"/api/v1/projects/{p['id']}").status_code == 200
        start(http, source="db")
        for p in doomed[4:]:  # while the job prepares, snapshots and builds
            assert http.delete(f"/api/v1/projects/{p['id']}").status_code == 200
        job = finished(http)
        assert job["state"] == "active", job
        wait_until(lambda: stats(http)["points_count"] == 12, timeout=60,
                   message="every delete applied")

        before = handled(http)
        topic = server.env["HANDWERK_KAFKA_TOPIC"]
        for p in doomed:
            asyncio.run(send(stack.bootstrap_servers, topic, stale_upsert(p)))
        wait_until(lambda: handled(http) >= before + len(doomed), timeout=60,
                   message="every stale upsert read")
        assert stats(http)["points_count"] == 12
        assert [p["id"] for p in doomed if found(http, p)] == []
