"""The relay as its own process: one active publisher through the database lease, a standby
that takes over when the holder dies, and every outbox row published (in order per project)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from sqlalchemy import func, select

from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import OutboxRow, RelayLease
from handwerk.outbox.schemas import ProjectFields
from handwerk.outbox.store import ProjectStore
from tests.conftest import Stack
from tests.helpers import async_wait_until
from tests.integration.server import HandwerkProcess, isolated_env

pytestmark = pytest.mark.integration

FIELDS = ProjectFields(name="Sideboard Nussbaum", description="wandhängend mit Push-to-open",
                       project_type="furniture", region="Tirol", total_area_sqm=2.0,
                       wood_type="Nussbaum", complexity=2, final_price=4_200.0)


def read_topic(bootstrap: str, topic: str, expected: int) -> list[dict[str, object]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    try:
        return [json.loads(r.value) for r in consumer][:expected + 100]
    finally:
        consumer.close()


async def test_single_active_relay_and_takeover(stack: Stack, tmp_path: Path) -> None:
    env = isolated_env(stack.env, tmp_path / "data", HANDWERK_RELAY_LEASE_TTL_S="2")
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'handwerk.db'}")
    await run_migrations(engine)
    sessions = session_factory(engine)
    store = ProjectStore(sessions)
    first = HandwerkProcess(["relay"], env, tmp_path / "relay1.log").start()
    second: HandwerkProcess | None = None
    try:
        async def holder() -> str | None:
            async with sessions() as session:
                lease = await session.get(RelayLease, "relay")
                return lease.holder if lease and lease.expires_at > 0 else None

        async def unpublished() -> int:
            async with sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(OutboxRow)
                                                .where(OutboxRow.published_at.is_(None))) or 0)

        first_holder = await async_wait_until(holder, timeout=60, message="first relay holds lease")
        assert first_holder.startswith(str(first.process.pid))  # type: ignore[union-attr]
        second = HandwerkProcess(["relay"], env, tmp_path / "relay2.log").start()
        rows = [await store.create(FIELDS) for _ in range(20)]
        for row in rows[:5]:
            await store.update(row.id, FIELDS.model_copy(update={"final_price": 1.0}))
        await async_wait_until(lambda: _zero(unpublished), timeout=60, message="all published")
        assert await holder() == first_holder  # the standby never took over meanwhile

        first.signal(signal.SIGKILL)
        first.wait(10)
        more = [await store.create(FIELDS) for _ in range(10)]
        await async_wait_until(lambda: _zero(unpublished), timeout=60, message="standby publishes")
        second_holder = await holder()
        assert second_holder and second_holder.startswith(str(second.process.pid))  # type: ignore[union-attr]

        events = read_topic(env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"], env["HANDWERK_KAFKA_TOPIC"], 35)
        assert len(events) == 35  # each row once: the two relays never published concurrently
        assert {e["subject"] for e in events} == {r.id for r in rows + more}
        versions: dict[str, list[int]] = {}
        for event in events:
            versions.setdefault(str(event["subject"]), []).append(int(event["version"]))  # type: ignore[call-overload]
        assert all(v == sorted(v) for v in versions.values())  # outbox order per project
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0
        await engine.dispose()


async def _zero(check: object) -> bool:
    return await check() == 0  # type: ignore[operator,no-any-return]
