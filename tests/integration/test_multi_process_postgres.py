"""Several processes against one PostgreSQL: two `handwerk api` processes take concurrent
writes (both writers change the same projects), two `handwerk relay` processes share the
publishing through the lease, and the one holding it is SIGKILLed mid-run. A `handwerk
consume` process indexes what the relays publish. Reconcile is off everywhere, so nothing may
need its repair. The chaos history checker then judges database, outbox and index, and the
topic itself must hold every outbox event, per project in version order.

Figures (writes acknowledged, when the relay was killed, how long the takeover took, the
verdict) are printed and written to ``multi-process-figures.json`` in the test's folder."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from handwerk.outbox.database import create_engine, session_factory
from handwerk.outbox.models import OutboxRow, RelayLease
from handwerk.outbox.store import ProjectStore
from tests.chaos.checker import check, read_journal, read_outbox
from tests.chaos.harness import History, Writer
from tests.conftest import DOCKER, Stack
from tests.helpers import async_wait_until
from tests.integration.server import HandwerkProcess, Server, isolated_env
from tests.integration.test_relay import assert_at_least_once_in_order, read_topic

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DOCKER, reason="drives the local broker and embedded index")]

MIN_WRITES = 300
WRITE_RATE = 15.0  # per writer and second: a backlog 2 cores clear within the run
LEASE_TTL_S = 3.0


class TaggedWriter(Writer):
    """The harness's writer, recording which API answered each write."""

    def _record(self, kind: str, op: str, **fields: Any) -> None:
        super()._record(kind, op, api=self.url, **fields)


def _changed_through_both(history: History) -> set[str]:
    by: dict[str, set[str]] = {}
    for write in history.acknowledged:
        by.setdefault(write["id"], set()).add(write["api"])
    return {pid for pid, apis in by.items() if len(apis) > 1}


class ApiProcess(Server):
    """`handwerk api` (no relay, no consumer) on a free port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self.args = ["api", "--port", str(self.port)]


@pytest.mark.timeout(600)
async def test_two_apis_and_two_relays_on_one_postgres_lose_nothing(
        stack: Stack, pg_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "apply-journal.jsonl"
    common = isolated_env(
        stack.env, tmp_path / "unused", None, HANDWERK_DATABASE_URL=pg_url,
        HANDWERK_RELAY_LEASE_TTL_S=str(LEASE_TTL_S), HANDWERK_RECONCILE_INTERVAL_S="0",
        HANDWERK_RECONCILE_ON_START="false", HANDWERK_OUTBOX_RETENTION_S=str(7 * 24 * 3600),
        HANDWERK_RELAY_POLL_INTERVAL_S="2")  # NOTIFY wakes the relays; the poll is the fallback

    def env(role: str, **extra: str) -> dict[str, str]:
        return {**common, "HANDWERK_DATA_DIR": str(tmp_path / role), **extra}

    apis = [ApiProcess(env(f"api{n}"), tmp_path / f"api{n}.log") for n in (1, 2)]
    relays = [HandwerkProcess(["relay"], env(f"relay{n}"), tmp_path / f"relay{n}.log")
              for n in (1, 2)]
    consumer = HandwerkProcess(["consume"], env("consumer", HANDWERK_APPLY_JOURNAL=str(journal)),
                               tmp_path / "consumer.log")
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    history = History(pipeline_only=True)
    figures: dict[str, Any] = {}
    try:
        for process in (*apis, *relays, consumer):
            process.start()
        for api in apis:
            await asyncio.to_thread(api.wait_ready, 180, indexing=False)

        async def holder() -> str | None:
            async with sessions() as session:
                lease = await session.get(RelayLease, "relay")
                return lease.holder if lease is not None and lease.expires_at > time.time() \
                    else None

        async def lease_holder() -> str | None:  # expired or not
            async with sessions() as session:
                lease = await session.get(RelayLease, "relay")
                return lease.holder if lease is not None else None

        first_holder = await async_wait_until(holder, timeout=60, message="a relay holds the lease")

        writers = [TaggedWriter(api.url, history, seed=n, rate=WRITE_RATE)
                   for n, api in enumerate(apis)]
        writers[1].live = writers[0].live  # both APIs change the same projects
        started = time.monotonic()
        writing = [asyncio.create_task(writer.run(concurrency=3)) for writer in writers]
        try:
            await async_wait_until(lambda: _at_least(history, MIN_WRITES // 3), timeout=120,
                                   interval=0.1, message="a third of the writes")
            # the holder now (the lease may have moved since the first read): never the standby
            current = await holder()
            assert current is not None, "no relay holds the lease right before the kill"
            victim = _relay_of(relays, current)
            victim.signal(signal.SIGKILL)
            killed = time.monotonic()
            assert await lease_holder() == current, "the lease moved between reading and killing"
            figures["relay_killed_at_s"] = round(killed - started, 2)
            figures["writes_acknowledged_at_kill"] = len(history.acknowledged)
            figures["lease_moved_before_kill"] = current != first_holder
            victim.wait(10)
            new_holder = await async_wait_until(lambda: _other_holder(holder, current),
                                                timeout=60, message="the standby takes over")
            assert _relay_of(relays, new_holder) is not victim
            figures["takeover_s"] = round(time.monotonic() - killed, 2)
            await async_wait_until(lambda: _at_least(history, MIN_WRITES), timeout=240,
                                   interval=0.2, message=f"{MIN_WRITES} acknowledged writes")
        finally:
            for writer in writers:
                writer.stop.set()
            await asyncio.gather(*writing)
        figures["write_seconds"] = round(time.monotonic() - started, 2)

        async def unpublished() -> int:
            async with sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(OutboxRow)
                                                .where(OutboxRow.published_at.is_(None))) or 0)

        await async_wait_until(lambda: _equals(unpublished, 0), timeout=120,
                               message="the surviving relay published everything")
        assert (await holder()) == new_holder
        store = ProjectStore(sessions)

        async def indexed_everything() -> bool:
            newest = (await read_outbox(store)).newest
            applied: dict[str, int] = {}
            for entry in read_journal(journal):
                for pid, version, _kind in entry.get("applied", []):
                    applied[pid] = max(applied.get(pid, 0), version)
            return all(applied.get(pid, 0) >= version for pid, version in newest.items())

        await async_wait_until(indexed_everything, timeout=180, interval=0.5,
                               message="the consumer indexed every newest version")
        history.converged = True
        figures["converged_s"] = round(time.monotonic() - started, 2)
    finally:
        for process in (*apis, *relays, consumer):
            process.stop()

    async with sessions() as session:
        outbox = [json.loads(e) for e in (await session.scalars(
            select(OutboxRow.event).order_by(OutboxRow.seq))).all()]
    await engine.dispose()
    events = read_topic(common["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"], common["HANDWERK_KAFKA_TOPIC"],
                        len(outbox))
    # per project, the outbox (seq order) holds each version once, in version order, although
    # both APIs wrote the same projects at once ...
    versions: dict[str, list[int]] = {}
    for event in outbox:
        versions.setdefault(event["subject"], []).append(int(event["version"]))
    out_of_order = {pid: v for pid, v in versions.items() if v != sorted(set(v))}
    assert not out_of_order, list(out_of_order.items())[:5]
    # ... and the topic holds every outbox event, per project first seen in that order
    assert_at_least_once_in_order(events, outbox)

    verdict = await check(tmp_path / "consumer", journal, history,
                          common["HANDWERK_INDEX_ALIAS"], database_url=pg_url)
    figures.update({
        "writes_acknowledged": len(history.acknowledged),
        "writes_indeterminate": len(history.indeterminate),
        "writes_rejected_4xx": len(history.aborted),
        "writes_conflict_409": sum(1 for w in history.aborted if w.get("status") == 409),
        "projects": len(versions),
        "projects_changed_through_both_apis": len(_changed_through_both(history)),
        "outbox_rows": len(outbox), "topic_records": len(events),
        "republished_after_kill": len(events) - len({e["id"] for e in events}),
        "verdict": "PASS" if verdict.ok else "FAIL", "properties": verdict.properties})
    (tmp_path / "multi-process-figures.json").write_text(json.dumps(figures, indent=2))
    print("multi-process on PostgreSQL:", json.dumps(figures))
    assert verdict.ok, json.dumps({"properties": verdict.properties, **verdict.details},
                                  default=str)
    assert len(history.acknowledged) >= MIN_WRITES
    assert figures["projects_changed_through_both_apis"] > 0  # the two APIs really competed


def _relay_of(relays: list[HandwerkProcess], holder: str) -> HandwerkProcess:
    """The relay process whose lease holder id is ``holder`` (``<pid>-...``)."""
    return next(r for r in relays
                if r.process is not None and holder.startswith(f"{r.process.pid}-"))


async def _at_least(history: History, count: int) -> bool:
    return len(history.acknowledged) >= count


async def _other_holder(holder: Any, first: str) -> str | None:
    current = await holder()
    return current if current is not None and current != first else None


async def _equals(check: Any, value: int) -> bool:
    return bool(await check() == value)
