"""Two consumer processes in one group: one frozen (SIGSTOP) past the session timeout loses its
partitions to the other, nothing is lost, and after SIGCONT the zombie rejoins harmlessly.

Each member writes its own embedded index here (Qdrant Edge is one process per shard; shared
-index replicas need a Qdrant server, which runs under HANDWERK_TEST_DOCKER=1 only), so the
union of their apply journals is what must cover every event."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from handwerk.contract.events import UPSERTED, build_event, encode_event
from tests.chaos.checker import read_journal
from tests.conftest import DOCKER, Stack
from tests.helpers import wait_until
from tests.integration.server import HandwerkProcess, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.skipif(DOCKER, reason="embedded index only")]


def applied(journal: Path) -> dict[str, int]:
    seen: dict[str, int] = {}
    for entry in read_journal(journal):
        for pid, version, _kind in entry.get("applied", []):
            seen[pid] = max(seen.get(pid, 0), version)
    return seen


def publish(producer: KafkaProducer, topic: str, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for pid in ids:
        data = {"id": pid, "name": "Fenster", "description": "Kastenfenster Sanierung",
                "project_type": "windows", "region": "Sachsen", "total_area_sqm": 8.0,
                "wood_type": "Kiefer", "complexity": 3, "final_price": 7100.0}
        producer.send(topic, key=pid.encode(), value=encode_event(build_event(
            event_type=UPSERTED, project_id=pid, version=1, data=data, source="urn:upstream:erp")))
    producer.flush(timeout=30)
    return ids


def test_frozen_member_loses_partitions_and_nothing_is_lost(stack: Stack, tmp_path: Path) -> None:
    base = isolated_env(stack.env, tmp_path / "unused", HANDWERK_KAFKA_PARTITIONS="4",
                        HANDWERK_RECONCILE_INTERVAL_S="0")
    members = []
    for name in ("a", "b"):
        env = {**base, "HANDWERK_DATA_DIR": str(tmp_path / name),
               "HANDWERK_APPLY_JOURNAL": str(tmp_path / f"{name}.jsonl")}
        members.append(HandwerkProcess(["consume"], env, tmp_path / f"{name}.log").start())
    a, b = members
    journals = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    topic = base["HANDWERK_KAFKA_TOPIC"]
    try:
        import asyncio

        from handwerk.kafka import ensure_topics
        from handwerk.settings import Settings

        asyncio.run(ensure_topics(Settings(kafka_bootstrap_servers=stack.bootstrap_servers,
                                           kafka_topic=topic, kafka_partitions=4,
                                           kafka_dlq_topic=base["HANDWERK_KAFKA_DLQ_TOPIC"]).kafka))

        def covered(ids: list[str], each_member: bool = False) -> bool:
            seen = [applied(j) for j in journals]
            union = set(seen[0]) | set(seen[1])
            return set(ids) <= union and (not each_member or all(s for s in seen))

        # both members joined: events end up split between them
        first = publish(producer, topic, 16)

        def both_working() -> bool:
            if covered(first, each_member=True):
                return True
            first.extend(publish(producer, topic, 8))
            return False
        wait_until(both_working, timeout=120, interval=2, message="both members consuming")

        a.signal(signal.SIGSTOP)  # frozen: no heartbeats, no leave-group
        second = publish(producer, topic, 40)
        # all 40 (spread over the 4 partitions) applied by the survivor: it took over
        wait_until(lambda: set(second) <= set(applied(journals[1])), timeout=90, interval=0.5,
                   message="the survivor took over the frozen member's partitions")

        a.signal(signal.SIGCONT)  # the zombie wakes up, is refused, rejoins
        third = publish(producer, topic, 40)
        wait_until(lambda: covered(third), timeout=90, interval=0.5, message="after rejoin")
        for journal in journals:  # redeliveries were skipped by the guard, never re-applied
            seen: set[str] = set()
            for entry in read_journal(journal):
                for pid, _version, _kind in entry.get("applied", []):
                    assert pid not in seen
                    seen.add(pid)
    finally:
        producer.close()
        for member in members:
            member.signal(signal.SIGCONT)
            member.stop()
