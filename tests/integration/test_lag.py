"""Consumer-group lag against the real broker: committed offset against high watermark per
partition, read by the lag monitor with no group member alive (stopped or SIGKILLed), the
oldest unapplied event ageing meanwhile, back to 0 once a member commits everything; the
`handwerk lag` command; and `handwerk relay` serving it all on its own /metrics port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from handwerk.kafka import LocalBroker, ensure_topics, free_port
from handwerk.metrics import Metrics
from handwerk.operations.lag import LagMonitor, LagSnapshot
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore
from handwerk.settings import Settings
from tests.conftest import DOCKER, Stack
from tests.helpers import async_wait_until, wait_until
from tests.integration.server import HandwerkProcess, isolated_env

pytestmark = pytest.mark.integration

# A group member in its own process, so that it can be SIGKILLed: joins, commits the offsets
# it is given, says so, and then only heartbeats.
MEMBER = """
import asyncio, json, sys
from aiokafka import AIOKafkaConsumer, TopicPartition

async def main(servers, topic, group, commits):
    member = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await member.start()
    while len(member.assignment()) < len(commits):
        await member.getmany(timeout_ms=200)
    await member.commit({TopicPartition(topic, int(p)): o for p, o in commits.items()})
    print("committed", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
"""


@pytest.fixture
async def topic(stack: Stack) -> Settings:
    """A fresh two-partition topic and group, with 10 records on partition 0 and 6 on 1."""
    name = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers, kafka_partitions=2,
                        kafka_topic=f"lag.{name}", kafka_dlq_topic=f"lag.{name}.dlq",
                        consumer_group=f"lag-{name}", lag_interval_s=0.2)
    await ensure_topics(settings.kafka)
    await produce(settings, {0: 10, 1: 6})
    return settings


async def produce(settings: Settings, counts: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition, n in counts.items():
            for i in range(n):
                await producer.send_and_wait(settings.kafka.topic, f"r{i}".encode(),
                                             key=b"k", partition=partition)
    finally:
        await producer.stop()


@pytest.fixture
async def monitor(topic: Settings) -> AsyncIterator[tuple[LagMonitor, Metrics]]:
    """The monitor running on its own, as in a process: every 0.2 s."""
    metrics = Metrics()
    lag = LagMonitor(topic, metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(lag.run(stop))
    try:
        yield lag, metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await lag.close()


async def snapshot_where(lag: LagMonitor, *, committed: dict[int, int | None],
                         high: dict[int, int], after: float = 0.0,
                         timeout: float = 30) -> LagSnapshot:
    """The first snapshot read after ``after`` that shows these offsets."""
    async def matching() -> LagSnapshot | None:
        s = lag.snapshot
        if s is None or s.read_at <= after:
            return None
        seen = ({p.partition: p.committed for p in s.partitions},
                {p.partition: p.high_watermark for p in s.partitions})
        return s if seen == (committed, high) else None
    return await async_wait_until(matching, timeout=timeout,
                                  message=f"lag snapshot with committed={committed}, high={high}")


def gauges(metrics: Metrics, settings: Settings, partition: int) -> dict[str, float | None]:
    labels = {"group": settings.consumer.group, "topic": settings.kafka.topic,
              "partition": str(partition)}
    get = metrics.registry.get_sample_value
    return {
        "lag": get("handwerk_ml_consumer_group_lag", labels),
        "committed": get("handwerk_ml_consumer_group_committed_offset", labels),
        "high": get("handwerk_ml_topic_high_watermark",
                    {"topic": settings.kafka.topic, "partition": str(partition)}),
        "age": get("handwerk_ml_oldest_unapplied_event_age_seconds", labels),
    }


async def commit_everything(settings: Settings, offsets: dict[int, int]) -> None:
    """A new member of the group reads to the end and commits (it joins once the group has
    dropped any dead member, i.e. after a session timeout)."""
    member = AIOKafkaConsumer(settings.kafka.topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                              group_id=settings.consumer.group, enable_auto_commit=False,
                              auto_offset_reset="earliest", session_timeout_ms=6000)
    await member.start()
    try:
        async def assigned() -> bool:
            await member.getmany(timeout_ms=200)
            return len(member.assignment()) == len(offsets)
        await async_wait_until(assigned, timeout=60, message="new member holds every partition")
        await member.commit({TopicPartition(settings.kafka.topic, p): o for p, o in offsets.items()})
    finally:
        await member.stop()


async def test_lag_stays_visible_while_the_member_is_killed_and_clears_after_recovery(
        topic: Settings, monitor: tuple[LagMonitor, Metrics], tmp_path: Path) -> None:
    lag, metrics = monitor
    never = await snapshot_where(lag, committed={0: None, 1: None}, high={0: 10, 1: 6})
    assert [p.lag for p in never.partitions] == [10, 6]  # no commit: every record is to apply
    exported = gauges(metrics, topic, 0)
    assert (exported["lag"], exported["committed"], exported["high"]) == (10, None, 10)

    with (tmp_path / "member.log").open("wb") as log:
        member = await asyncio.create_subprocess_exec(
            sys.executable, "-c", MEMBER, str(topic.kafka.bootstrap_servers), topic.kafka.topic,
            topic.consumer.group, json.dumps({"0": 4, "1": 1}), stdout=log, stderr=log)
    try:
        await snapshot_where(lag, committed={0: 4, 1: 1}, high={0: 10, 1: 6}, timeout=60)
        member.send_signal(signal.SIGKILL)  # a crash: no leave-group, no further commit
        await asyncio.wait_for(member.wait(), 10)
        await produce(topic, {1: 3})  # the pipeline goes on writing while nobody consumes

        first = await snapshot_where(lag, committed={0: 4, 1: 1}, high={0: 10, 1: 9})
        current = lag.snapshot  # the gauges show the latest read (no await in between)
        assert current is not None
        for p in current.partitions:
            assert p.lag == p.high_watermark - (p.committed or 0)
            assert gauges(metrics, topic, p.partition) == {
                "lag": p.lag, "committed": p.committed, "high": p.high_watermark,
                "age": pytest.approx(p.oldest_unapplied_age_s(current.read_at))}
            assert p.oldest_unapplied_at is not None and p.last_applied_at is not None
            assert p.last_applied_at <= p.oldest_unapplied_at
        assert first.total_lag == 6 + 8
        age_then = first.oldest_unapplied_age_s()
        later = await snapshot_where(lag, committed={0: 4, 1: 1}, high={0: 10, 1: 9},
                                     after=first.read_at + 0.5)
        assert later.oldest_unapplied_age_s() >= age_then + 0.5  # it ages while nobody applies
        assert later.total_lag == first.total_lag
        assert metrics.registry.get_sample_value(
            "handwerk_ml_lag_monitor_last_success_timestamp_seconds") >= later.read_at
    finally:
        if member.returncode is None:
            member.kill()
            await asyncio.wait_for(member.wait(), 10)

    await commit_everything(topic, {0: 10, 1: 9})
    caught_up = await snapshot_where(lag, committed={0: 10, 1: 9}, high={0: 10, 1: 9}, timeout=60)
    assert caught_up.total_lag == 0 and caught_up.oldest_unapplied_age_s() == 0
    for partition in (0, 1):
        assert gauges(metrics, topic, partition)["lag"] == 0
        assert gauges(metrics, topic, partition)["age"] == 0


def lag_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`handwerk lag` with only the broker, topic and group configured (no database, index)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env.update({"HANDWERK_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka.bootstrap_servers),
                "HANDWERK_KAFKA_TOPIC": settings.kafka.topic,
                "HANDWERK_CONSUMER_GROUP": settings.consumer.group})
    return subprocess.run([sys.executable, "-m", "handwerk", "lag", *args], env=env,
                          capture_output=True, text=True, timeout=60)


async def test_lag_command_while_stopped_and_after_recovery(topic: Settings) -> None:
    member = AIOKafkaConsumer(topic.kafka.topic, bootstrap_servers=topic.kafka.bootstrap_servers,
                              group_id=topic.consumer.group, enable_auto_commit=False,
                              auto_offset_reset="earliest", session_timeout_ms=6000)
    await member.start()
    try:
        async def assigned() -> bool:
            await member.getmany(timeout_ms=200)
            return len(member.assignment()) == 2
        await async_wait_until(assigned, timeout=60, message="member holds both partitions")
        await member.commit({TopicPartition(topic.kafka.topic, 0): 7,
                             TopicPartition(topic.kafka.topic, 1): 6})
    finally:
        await member.stop()  # stopped: leaves the group, its commits stay

    stopped = await asyncio.to_thread(lag_cli, topic, "--json")
    assert stopped.returncode == 0, stopped.stderr
    doc = json.loads(stopped.stdout)
    assert (doc["group"], doc["topic"]) == (topic.consumer.group, topic.kafka.topic)
    assert [(p["partition"], p["committed_offset"], p["high_watermark"], p["lag"])
            for p in doc["partitions"]] == [(0, 7, 10, 3), (1, 6, 6, 0)]
    assert doc["totals"]["lag"] == 3 and doc["totals"]["partitions"] == 2
    assert doc["partitions"][0]["oldest_unapplied_event_age_s"] > 0
    assert doc["partitions"][0]["last_applied_event_time"] is not None
    assert doc["partitions"][1]["oldest_unapplied_event_age_s"] == 0

    table = await asyncio.to_thread(lag_cli, topic)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["0", "7", "10", "3"] == next(r[:4] for r in rows if r[:1] == ["0"])
    assert ["total", "3"] == next(r[:2] for r in rows if r[:1] == ["total"])

    await commit_everything(topic, {0: 10, 1: 6})
    recovered = json.loads((await asyncio.to_thread(lag_cli, topic, "--json")).stdout)
    assert [p["lag"] for p in recovered["partitions"]] == [0, 0]
    assert recovered["totals"] == {"partitions": 2, "lag": 0, "oldest_unapplied_event_age_s": 0}


async def test_lag_command_names_a_missing_topic(stack: Stack) -> None:
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap_servers,
                        kafka_topic=f"missing.{uuid.uuid4().hex[:8]}")
    result = await asyncio.to_thread(lag_cli, settings, "--json")
    assert result.returncode == 1
    assert settings.kafka.topic in result.stderr and result.stdout == ""


def scrape(url: str) -> dict[str, list[Any]]:
    """Samples by metric name (a counter's _total is its family name)."""
    text = httpx.get(url, timeout=5).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


async def test_relay_serves_lag_and_outbox_gauges_on_its_metrics_port(
        stack: Stack, tmp_path: Path) -> None:
    """The relay keeps running when the consumer is down, so it exports the lag too: here no
    consumer ever ran, and the lag is every event the relay published."""
    port = free_port()
    env = isolated_env(stack.env, tmp_path / "data", HANDWERK_METRICS_PORT=str(port),
                       HANDWERK_LAG_INTERVAL_S="0.3")
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'handwerk.db'}")
    await run_migrations(engine)
    store = ProjectStore(session_factory(engine))
    fields = ProjectFields(name="Treppe", description="Faltwerktreppe Eiche", project_type="stairs",
                           region="Bayern", total_area_sqm=5.0, wood_type="Eiche", complexity=3,
                           final_price=9_000.0)
    for _ in range(3):
        await store.create(fields)
    relay = HandwerkProcess(["relay"], env, tmp_path / "relay.log").start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def published_and_measured() -> dict[str, list[Any]] | None:
            if relay.process is not None and relay.process.poll() is not None:
                raise AssertionError(f"relay exited:\n{relay.log_tail()}")
            try:
                families = scrape(url)
            except httpx.HTTPError:
                return None
            lag = families.get("handwerk_ml_consumer_group_lag", [])
            total = sum(s.value for s in lag)
            backlog = families.get("handwerk_ml_outbox_backlog", [])
            age = families.get("handwerk_ml_outbox_oldest_age_seconds", [])
            if total == 3 and backlog and backlog[0].value == 0 and age and age[0].value == 0:
                return families
            return None

        families = await asyncio.to_thread(wait_until, published_and_measured, timeout=90,
                                           interval=0.2, message="relay exports lag 3, outbox 0")
        info = families["handwerk_ml_process_info"]
        assert [s.labels["role"] for s in info] == ["relay"] and info[0].value == 1
        lag = families["handwerk_ml_consumer_group_lag"]
        assert {s.labels["group"] for s in lag} == {env["HANDWERK_CONSUMER_GROUP"]}
        assert {s.labels["topic"] for s in lag} == {env["HANDWERK_KAFKA_TOPIC"]}
        assert len(lag) == 6  # every partition, also those without events
        assert "handwerk_ml_consumer_group_committed_offset" not in {
            name for name, samples in families.items() if samples}  # nobody ever committed
        assert families["handwerk_ml_lag_monitor_last_success_timestamp_seconds"][0].value > 0
        body = (await asyncio.to_thread(httpx.get, url, timeout=5)).text
        assert "handwerk_ml_consumer_group_lag{" in body
        assert 'handwerk_ml_process_info{role="relay"' in body
    finally:
        assert relay.stop() == 0
        await engine.dispose()
    with pytest.raises(httpx.HTTPError):  # closed on shutdown
        await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.skipif(DOCKER, reason="restarts its own local broker")
async def test_monitor_survives_a_broker_outage_and_reads_again_after_it(tmp_path: Path) -> None:
    """Broker down: reads fail, the task lives on with the last snapshot and gauges; broker
    back (same port, empty memory log): the next reads succeed by themselves."""
    broker = LocalBroker()
    broker.start()
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, kafka_partitions=2,
                        kafka_topic="outage", kafka_dlq_topic="outage.dlq", consumer_group="outage",
                        lag_interval_s=0.2)
    metrics = Metrics()
    monitor = LagMonitor(settings, metrics, read_timeout_s=2)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await ensure_topics(settings.kafka)
        await produce(settings, {0: 2})
        task = asyncio.create_task(monitor.run(stop))
        before = await snapshot_where(monitor, committed={0: None, 1: None}, high={0: 2, 1: 0})

        broker.stop()
        async def failing() -> bool:
            return monitor.last_error is not None
        await async_wait_until(failing, timeout=30, message="a read failed")
        assert not task.done() and monitor.snapshot is before
        assert metrics.registry.get_sample_value(
            "handwerk_ml_lag_monitor_last_success_timestamp_seconds") == before.read_at

        broker.start()  # same port, empty log
        await ensure_topics(settings.kafka)
        await produce(settings, {1: 3})
        await snapshot_where(monitor, committed={0: None, 1: None}, high={0: 0, 1: 3}, timeout=90)
        assert not task.done() and monitor.last_error is None
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await monitor.close()
        broker.stop()
