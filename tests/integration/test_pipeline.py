"""The whole pipeline over HTTP against the real broker, database, index and model:
writes go through the outbox and Kafka, and search follows within a deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from handwerk.contract.events import DELETED, UPSERTED, build_event, encode_event
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.server import Server, isolated_env

pytestmark = pytest.mark.integration

KITCHEN = {"name": "Landhausküche Eiche", "description": "Landhausküche mit Kochinsel und "
           "Quarzarbeitsplatte, geölte Eichenfronten", "project_type": "kitchen",
           "region": "Bayern", "total_area_sqm": 18.5, "wood_type": "Eiche", "complexity": 3,
           "final_price": 32_000.0}
STAIRS = {"name": "Wangentreppe Buche", "description": "Halbgewendelte Wangentreppe über zwei "
          "Geschosse mit Edelstahlgeländer", "project_type": "stairs", "region": "Hessen",
          "total_area_sqm": 6.0, "wood_type": "Buche", "complexity": 4, "final_price": 14_500.0}


@pytest.fixture(scope="module")
def server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("pipeline")
    env = isolated_env(stack.env, folder / "data")
    srv = Server(env, folder / "serve.log").start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, f"server did not shut down cleanly ({code}):\n{srv.log_tail()}"


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def search(http: httpx.Client, query: str, **body: Any) -> list[dict[str, Any]]:
    response = http.post("/api/v1/similarity/find-similar",
                         json={"query": query, "threshold": 0.0, "top_k": 20, **body})
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_create_update_delete_follow_in_search(http: httpx.Client) -> None:
    created = http.post("/api/v1/projects/", json=KITCHEN)
    assert created.status_code == 201, created.text
    project = created.json()
    pid = project["id"]
    assert project["version"] == 1

    hits = wait_until(lambda: [h for h in search(http, "Küche mit Kochinsel") if h["id"] == pid],
                      timeout=30, message="created project searchable")
    assert hits[0]["final_price"] == 32_000.0 and hits[0]["similarity"] > 0.3
    assert http.get(f"/api/v1/projects/{pid}").json()["indexed_version"] == 1

    changed = http.put(f"/api/v1/projects/{pid}", params={"wait_indexed": 20},
                       json={**KITCHEN, "description": "Spindeltreppe aus Stahl und Eiche",
                             "name": "Spindeltreppe", "project_type": "stairs"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["indexed_version"] == 2
    top = search(http, "Spindeltreppe aus Stahl", filters={"project_type": "stairs"})
    assert any(h["id"] == pid and h["version"] == 2 for h in top)
    assert not any(h["id"] == pid for h in search(http, "x", filters={"project_type": "kitchen"}))

    deleted = http.delete(f"/api/v1/projects/{pid}", params={"wait_indexed": 20})
    assert deleted.status_code == 200 and deleted.json() == {
        "id": pid, "version": 3, "indexed_version": 3, "deleted": True}
    assert not any(h["id"] == pid for h in search(http, "Spindeltreppe aus Stahl"))
    assert http.get(f"/api/v1/projects/{pid}").status_code == 404


def test_price_only_update_does_not_reembed(http: httpx.Client) -> None:
    pid = http.post("/api/v1/projects/", params={"wait_indexed": 20}, json=STAIRS).json()["id"]
    embedded = metric(http, "handwerk_ml_texts_embedded_total")
    reused = metric(http, "handwerk_ml_vectors_reused_total")
    updated = http.put(f"/api/v1/projects/{pid}", params={"wait_indexed": 20},
                       json={**STAIRS, "final_price": 15_900.0})
    assert updated.json()["indexed_version"] == 2
    assert metric(http, "handwerk_ml_texts_embedded_total") == embedded
    assert metric(http, "handwerk_ml_vectors_reused_total") == reused + 1
    hit = next(h for h in search(http, STAIRS["description"]) if h["id"] == pid)
    assert hit["final_price"] == 15_900.0 and hit["similarity"] > 0.6


def test_filters_and_batch_search(http: httpx.Client) -> None:
    a = http.post("/api/v1/projects/", params={"wait_indexed": 20},
                  json={**KITCHEN, "region": "Sachsen", "final_price": 9_000.0}).json()["id"]
    b = http.post("/api/v1/projects/", params={"wait_indexed": 20},
                  json={**KITCHEN, "region": "Sachsen", "final_price": 60_000.0}).json()["id"]
    cheap = search(http, "Küche", filters={"region": "Sachsen", "max_price": 10_000})
    assert [h["id"] for h in cheap] == [a]
    dear = search(http, "Küche", filters={"region": "Sachsen", "min_price": 50_000})
    assert [h["id"] for h in dear] == [b]

    response = http.post("/api/v1/similarity/batch-similar", json={
        "queries": ["Küche mit Kochinsel", "Treppe mit Geländer"], "top_k": 3, "threshold": 0.1})
    body = response.json()
    assert response.status_code == 200 and body["total_queries"] == 2
    assert body["batch_time_ms"] > 0 and all(len(r["results"]) <= 3 for r in body["results"])
    assert body["results"][0]["results"][0]["project_type"] == "kitchen"


def test_invalid_requests_get_4xx_with_reason(http: httpx.Client) -> None:
    cases = [
        ("post", "/api/v1/similarity/find-similar", {"query": "x", "top_k": 10**9}, 422, "top_k"),
        ("post", "/api/v1/similarity/find-similar", {"query": "x", "threshold": 2}, 422, "threshold"),
        ("post", "/api/v1/similarity/find-similar", {"query": ""}, 422, "query"),
        ("post", "/api/v1/projects/", {**KITCHEN, "complexity": 9}, 422, "complexity"),
        ("post", "/api/v1/projects/", {**KITCHEN, "final_price": -1}, 422, "final_price"),
        ("post", "/api/v1/projects/", {**KITCHEN, "unknown": 1}, 422, "unknown"),
    ]
    for method, path, body, code, field in cases:
        response = getattr(http, method)(path, json=body)
        assert response.status_code == code, (path, body, response.text)
        assert field in response.text
    nan = http.post("/api/v1/projects/", content=json.dumps({**KITCHEN, "final_price": float("nan")}),
                    headers={"content-type": "application/json"})
    assert nan.status_code == 422
    huge = http.post("/api/v1/similarity/find-similar", json={"query": "k" * 1_100_000})
    assert huge.status_code == 413 and "larger than" in huge.text
    assert http.get(f"/api/v1/projects/{uuid.uuid4()}").status_code == 404
    assert http.get("/api/v1/projects/not-a-uuid").status_code == 422
    assert http.put(f"/api/v1/projects/{uuid.uuid4()}", json=KITCHEN).status_code == 404


def test_list_projects_pages(http: httpx.Client) -> None:
    first = http.get("/api/v1/projects", params={"limit": 2, "offset": 0}).json()
    second = http.get("/api/v1/projects", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] >= 3
    assert len(first["items"]) == 2 and not {p["id"] for p in first["items"]} & {
        p["id"] for p in second["items"]}
    assert all("indexed_version" in p for p in first["items"])


def _upstream_event(kind: str, pid: str, version: int, **data: Any) -> bytes:
    body = None if kind == DELETED else {"id": pid, **KITCHEN, **data}
    return encode_event(build_event(event_type=kind, project_id=pid, version=version,  # type: ignore[arg-type]
                                    data=body, source="urn:upstream:erp"))


def test_upstream_events_and_poison_records(server: Server, http: httpx.Client) -> None:
    """An upstream system (kafka-python, not our code) writes straight to the topic: valid
    events are indexed, malformed ones go to the DLQ with a reason, and nothing blocks."""
    topic, dlq = server.env["HANDWERK_KAFKA_TOPIC"], server.env["HANDWERK_KAFKA_DLQ_TOPIC"]
    producer = KafkaProducer(bootstrap_servers=server.env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"],
                             acks="all")
    upstream, gone = str(uuid.uuid4()), str(uuid.uuid4())
    key = upstream.encode()
    try:
        for value in [b"{not json", _upstream_event(UPSERTED, upstream, 1, name="ERP Küche"),
                      b'{"specversion":"1.0","type":"handwerk.project.upserted"}', None,
                      _upstream_event(UPSERTED, upstream, 3, name="ERP Küche v3"),
                      _upstream_event(UPSERTED, upstream, 2, name="ERP Küche v2 (late)"),
                      _upstream_event(UPSERTED, gone, 1, name="ERP Schrank"),
                      _upstream_event(DELETED, gone, 2)]:
            producer.send(topic, value=value, key=key if value is None or b"ERP K" in value
                          or value.startswith(b"{") and upstream.encode() in value
                          else gone.encode())
        producer.flush(timeout=30)
    finally:
        producer.close()

    def indexed() -> list[dict[str, Any]]:
        return [h for h in search(http, "Küche mit Kochinsel") if h["id"] == upstream]
    hit = wait_until(lambda: [h for h in indexed() if h["version"] == 3], timeout=30,
                     message="upstream v3 indexed")[0]
    assert hit["name"] == "ERP Küche v3"

    consumer = KafkaConsumer(dlq, bootstrap_servers=server.env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"],
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    letters: list[Any] = []
    try:
        wait_until(lambda: letters.extend(consumer) or len(letters) >= 2, timeout=30,
                   message="two dead letters")
    finally:
        consumer.close()
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in letters)
    assert reasons[0].startswith("not JSON") and reasons[1].startswith("schema")
    assert all(dict(r.headers)["dlq.original.topic"].decode() == topic for r in letters)
    assert {r.value for r in letters} >= {b"{not json"}

    # operators see the reasons and can replay after a fix (here: the same bad bytes again)
    def dlq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "handwerk", "dlq", *args], env=server.env,
                              capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in dlq("list").stdout.splitlines()]
    assert len(rows) == 2 and all(r["reason"] and r["original"].startswith(topic) for r in rows)
    assert "replayed 2 records" in dlq("replay").stderr
    # still invalid, so they are dead-lettered again; a second replay takes only those two
    wait_until(lambda: len(dlq("list").stdout.splitlines()) == 4, timeout=30, interval=0.5,
               message="replayed records dead-lettered again")
    assert "replayed 2 records" in dlq("replay").stderr

    # a project created and deleted upstream is not searchable; the consumer kept going
    assert not any(h["id"] == gone for h in search(http, "ERP Schrank"))
    after = http.post("/api/v1/projects/", params={"wait_indexed": 20}, json=STAIRS).json()
    assert after["indexed_version"] == 1


def test_stats_health_schema_and_metrics(http: httpx.Client) -> None:
    stats = http.get("/api/v1/similarity/stats").json()
    for key in ("vector_index", "status", "points_count", "vectors_count",
                "indexed_vectors_count", "outbox_backlog", "consumer_lag"):
        assert key in stats
    assert stats["points_count"] >= 1 and stats["outbox_backlog"] == 0
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["ready"] is True
    schema = http.get("/api/v1/events/schema").json()
    assert schema["properties"]["type"]["enum"] == [UPSERTED, DELETED]
    text = http.get("/metrics").text
    for name in ("handwerk_ml_request_duration_seconds", "handwerk_ml_request_errors_total",
                 "handwerk_ml_active_requests", "handwerk_ml_consumer_lag",
                 "handwerk_ml_write_to_searchable_seconds", "handwerk_ml_outbox_backlog"):
        assert name in text, name
