"""Issue 19 #1 and #2: a handover with consumers in other processes (``handwerk consume`` beside
``handwerk api`` on a Qdrant server). Those consumers write through the alias and do not share
the api's write lock, so between the api's last catch-up and the alias switch they may apply
(and commit) writes to the generation being replaced. The new generation must hold them before
any search is served from it, a crash right after the switch must not lose them (the next
start finishes the catch-up), and the catch-up takes their vectors from the replaced
generation instead of embedding the texts again. Several API replicas on one Qdrant server:
one of them manages the generations (a lease), the others follow the alias.

Real broker, real model, qdrant-client local mode; the "other process" is a second consumer
(its own ``ActiveIndex`` following the alias, its own write lock) on the same store, since
local mode admits one client per folder.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import update

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import DELETED, UPSERTED, build_event, decode_event, encode_event
from handwerk.embedding.embedder import Embedder
from handwerk.generations.handover import Handover
from handwerk.generations.jobs import JobState, ReindexJob
from handwerk.generations.manager import ReindexManager, ReindexRefused
from handwerk.generations.upkeep import CompactionBaseline
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import GenerationCatalog, new_meta
from handwerk.index.factory import IndexFactory
from handwerk.index.protocol import IndexUnavailable, VectorIndex
from handwerk.kafka import ensure_topics
from handwerk.metrics import Metrics
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.models import RelayLease
from handwerk.producer.lease import RelayLeaseKeeper
from handwerk.settings import Settings
from tests.conftest import Stack

pytestmark = pytest.mark.timeout(180)


class Counted:
    """The session's real model, counting the texts embedded through it."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return await self._inner.embed_documents(texts)

    async def aclose(self) -> None:  # the session's model outlives the test
        return None


def project(pid: str, name: str) -> dict[str, Any]:
    return {"id": pid, "name": name, "description": f"{name} aus Eiche", "project_type": "kitchen",
            "region": "Bayern", "total_area_sqm": 12.0, "wood_type": "Eiche", "complexity": 2,
            "final_price": 4200.0}


def upserted(pid: str, version: int, name: str) -> dict[str, Any]:
    return build_event(event_type=UPSERTED, project_id=pid, version=version,
                       data=project(pid, name))


def deleted(pid: str, version: int) -> dict[str, Any]:
    return build_event(event_type=DELETED, project_id=pid, version=version, data=None)


async def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(settings.kafka.topic, encode_event(event),
                                         key=event["subject"].encode())
    finally:
        await producer.stop()


def decoded(events: list[dict[str, Any]]) -> list[Any]:
    return [decode_event(encode_event(e), e["subject"].encode()) for e in events]


class Crash(BaseException):
    """The serving process dies here (nothing after it runs)."""


class SwitchHook:
    """Wraps the real catalog: ``before`` runs just before the alias moves (the window between
    the api's last catch-up and the switch), ``crash_after`` kills the handover right after."""

    def __init__(self, catalog: GenerationCatalog) -> None:
        self._catalog = catalog
        self.folder = catalog.folder
        self.before: Any = None
        self.crash_after = False

    def index(self, generation: str, *, model: str, dimension: int) -> VectorIndex:
        return self._catalog.index(generation, model=model, dimension=dimension)

    async def current(self) -> str | None:
        return await self._catalog.current()

    async def activate(self, generation: str) -> None:
        if self.before is not None:
            await self.before()
        await self._catalog.activate(generation)
        if self.crash_after:
            raise Crash(generation)

    async def drop(self, generation: str) -> None:
        await self._catalog.drop(generation)


class Watched(ActiveIndex):
    """The api's live target; ``switched`` is set the moment searches move to another one."""

    def __init__(self, target: IndexTarget) -> None:
        super().__init__(target)
        self.switched = asyncio.Event()

    def switch(self, target: IndexTarget) -> IndexTarget:
        previous = super().switch(target)
        self.switched.set()
        return previous


@dataclass
class Deployment:
    settings: Settings
    factory: IndexFactory
    catalog: SwitchHook
    model: Counted
    old: VectorIndex  # the api's bound target, g0001
    new: VectorIndex  # g0002, built and ready
    foreign: ActiveIndex  # the consumer in another process: through the alias, own lock
    p: str
    r: str


@pytest.fixture
async def deployment(stack: Stack, tmp_path: Path, embedder: Embedder,
                     ) -> AsyncIterator[Deployment]:
    name = f"handover-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=stack.bootstrap_servers,
                        kafka_topic=name, kafka_dlq_topic=f"{name}.dlq", kafka_partitions=1,
                        consumer_group=name, index_backend="qdrant",
                        qdrant_path=str(tmp_path / "qdrant"), index_alias="projects")
    await ensure_topics(settings.kafka)
    model = Counted(embedder)
    factory = IndexFactory(settings)
    catalog = SwitchHook(factory.catalog())
    p, r = str(uuid.uuid4()), str(uuid.uuid4())
    history = [upserted(p, 1, "Landhausküche"), upserted(r, 1, "Einbauschrank")]
    await publish(settings, history)

    # the consumers of g0001 (through the alias, creating it), then g0001 as the api binds it
    foreign_index = factory.vector_index(model=model.model_name, dimension=model.dimension)
    await foreign_index.open()
    key = model.content_key
    catalog.folder.write_meta(catalog.folder.read_meta("g0001").with_(content_key=key))  # type: ignore[union-attr]
    elsewhere = Counted(embedder)  # the other process's own model
    foreign = ActiveIndex(IndexTarget("g0001", foreign_index, elsewhere,  # type: ignore[arg-type]
                                      catalog.folder.read_meta("g0001")))
    foreign.follow_alias(catalog)
    await IndexApplier(foreign, elsewhere, Metrics()).apply(decoded(history))  # type: ignore[arg-type]
    old = catalog.index("g0001", model=model.model_name, dimension=model.dimension)
    await old.open()

    # g0002: what a builder left (the same history, offsets after it)
    new = catalog.index("g0002", model=model.model_name, dimension=model.dimension)
    await new.open()
    await IndexApplier(new, model, Metrics()).apply(decoded(history))  # type: ignore[arg-type]
    catalog.folder.write_meta(new_meta("g0002", model.model_name, model.dimension, state="ready",
                                       source="topic", content_key=key, offsets={"0": 2}))
    model.texts.clear()
    try:
        yield Deployment(settings, factory, catalog, model, old, new, foreign, p, r)
    finally:
        for index in (new, old, foreign_index):
            await index.close()


def serving(d: Deployment) -> Watched:
    return Watched(IndexTarget("g0001", d.old, d.model,  # type: ignore[arg-type]
                               d.catalog.folder.read_meta("g0001")))


def writes_in_the_window(d: Deployment) -> tuple[str, Any]:
    """Delete P and create Q, applied (and acknowledged) by the other process through the
    alias, i.e. into g0001, after the api's last catch-up and before the alias moves."""
    q = str(uuid.uuid4())
    window = [deleted(d.p, 2), upserted(q, 1, "Garderobe mit Sitzbank")]

    async def write() -> None:
        await publish(d.settings, window)
        await IndexApplier(d.foreign, d.foreign.embedder, Metrics()).apply(decoded(window))

    return q, write


async def states(index: VectorIndex, *pids: str) -> dict[str, bool]:
    """pid -> live (absent: never written)."""
    return {pid: not s.deleted for pid, s in (await index.get_states(list(pids))).items()}


async def test_writes_another_process_made_before_the_switch_are_in_the_new_generation_when_it_serves(
        deployment: Deployment) -> None:
    d = deployment
    active = serving(d)
    q, write = writes_in_the_window(d)
    d.catalog.before = write
    seen: dict[str, bool] = {}

    async def first_search_after_the_switch() -> None:
        await active.switched.wait()
        seen.update(await states(active.target.index, d.p, q))

    watcher = asyncio.create_task(first_search_after_the_switch())
    handover = Handover(d.settings, d.catalog, active, Metrics(), lambda _m: d.model,  # type: ignore[arg-type, return-value]
                        CompactionBaseline())
    job = ReindexJob(kind="reindex", source="topic", model=d.model.model_name, generation="g0002")
    await handover.run(job, d.catalog.folder.read_meta("g0002"), force=True)  # type: ignore[arg-type]
    await asyncio.wait_for(watcher, 10)
    try:
        assert job.state is JobState.ACTIVE and active.target.generation == "g0002"
        assert seen == {d.p: False, q: True}, "the first search on g0002 missed the window"
        # Q's vector came from the replaced generation, not from the encoder again
        assert d.model.texts == [], d.model.texts
        meta = d.catalog.folder.read_meta("g0002")
        assert meta is not None and meta.state == "active" and meta.catch_up_from is None
    finally:
        await handover.close()
        await active.target.index.close()


async def test_a_crash_right_after_the_switch_is_caught_up_by_the_next_start(
        deployment: Deployment) -> None:
    d = deployment
    active = serving(d)
    q, write = writes_in_the_window(d)
    d.catalog.before, d.catalog.crash_after = write, True
    handover = Handover(d.settings, d.catalog, active, Metrics(), lambda _m: d.model,  # type: ignore[arg-type, return-value]
                        CompactionBaseline())
    job = ReindexJob(kind="reindex", source="topic", model=d.model.model_name, generation="g0002")
    with pytest.raises(Crash):
        await handover.run(job, d.catalog.folder.read_meta("g0002"), force=True)  # type: ignore[arg-type]
    assert await d.catalog.current() == "g0002"
    # the next start: the process opens what the alias names and its manager takes charge
    d.catalog.before, d.catalog.crash_after = None, False
    reopened = d.catalog.index("g0002", model=d.model.model_name, dimension=d.model.dimension)
    await reopened.open()
    assert await states(reopened, d.p, q) == {d.p: True}, "the crash left g0002 without the window"
    restarted = ActiveIndex(IndexTarget("g0002", reopened, d.model,  # type: ignore[arg-type]
                                        d.catalog.folder.read_meta("g0002")))
    manager = ReindexManager(d.settings, d.catalog, restarted, None, Metrics(),  # type: ignore[arg-type]
                             lambda _m: d.model)  # type: ignore[arg-type, return-value]
    try:
        await manager.take_charge()
        assert await states(reopened, d.p, q) == {d.p: False, q: True}
        assert d.model.texts == [], d.model.texts  # donor: the replaced generation
        meta = d.catalog.folder.read_meta("g0002")
        assert meta is not None and meta.catch_up_from is None
    finally:
        await manager.close()
        await reopened.close()


# ---------------------------------------------------------------- issue 19 #2: one manager


async def test_one_api_replica_manages_the_generations_and_the_others_follow_the_alias(
        deployment: Deployment, tmp_path: Path) -> None:
    """Two API replicas on one Qdrant server (each with a consumer inside, bound to its own
    target): only the lease holder starts jobs and cleans up; the other one refuses jobs,
    leaves the live generation's record alone, stops writing the replaced generation once
    the alias moved, and follows the switch. A holder whose lease was taken over is refused
    the switch."""
    d = deployment
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await run_migrations(engine)
    sessions = session_factory(engine)
    ttl = d.settings.generations.lease_ttl_s

    def replica(name: str, index: VectorIndex) -> tuple[ReindexManager, ActiveIndex]:
        active = ActiveIndex(IndexTarget("g0001", index, d.model,  # type: ignore[arg-type]
                                         d.catalog.folder.read_meta("g0001")))
        active.guard_alias(d.catalog)
        lease = RelayLeaseKeeper(sessions, name, ttl, name="generations")
        return ReindexManager(d.settings, d.catalog, active, None, Metrics(),  # type: ignore[arg-type]
                              lambda _m: d.model, lease=lease), active  # type: ignore[arg-type, return-value]

    b_index = d.catalog.index("g0001", model=d.model.model_name, dimension=d.model.dimension)
    await b_index.open()
    a, a_active = replica("replica-a", d.old)
    b, b_active = replica("replica-b", b_index)
    try:
        assert await a.take_charge() and not await b.take_charge()
        assert a.manages and not b.manages
        with pytest.raises(ReindexRefused, match="another API replica"):
            b.start(source="topic")
        with pytest.raises(ReindexRefused, match="another API replica"):
            b.activate("g0002")

        a.activate("g0002")  # A hands over
        await a.wait()
        assert a.job is not None and a.job.state is JobState.ACTIVE, a.job
        assert await d.catalog.current() == "g0002" and b_active.target.generation == "g0001"

        # B, not yet following: its consumer must not write g0001 any more, and its clean-up
        # must not touch the live generation's record
        late = decoded([upserted(str(uuid.uuid4()), 1, "Schuhschrank")])
        with pytest.raises(IndexUnavailable, match="alias moved"):
            await IndexApplier(b_active, d.model, Metrics()).apply(late)  # type: ignore[arg-type]
        await b.clean_up()
        live = d.catalog.folder.read_meta("g0002")
        assert live is not None and live.state == "active"

        # a catch-up still pending on the new generation: not yet followed
        d.catalog.folder.write_meta(live.with_(catch_up_from={"0": 0}, catch_up_donor="g0001"))
        assert not await b.follow()
        d.catalog.folder.write_meta(live)
        assert await b.follow() and b_active.target.generation == "g0002"
        await IndexApplier(b_active, d.model, Metrics()).apply(late)  # type: ignore[arg-type]

        # A stalls past its TTL and B takes over: A's next switch is refused (fenced)
        async with sessions.begin() as session:
            await session.execute(update(RelayLease).where(RelayLease.name == "generations")
                                  .values(expires_at=0.0))
        assert await b.take_charge() and b.manages
        a.activate("g0001")  # a rollback A still believes it may run
        await a.wait()
        assert a.job.state is JobState.REFUSED and "lease" in (a.job.error or ""), a.job
        assert await d.catalog.current() == "g0002"
    finally:
        await a.close()
        await b.close()
        await a_active.target.index.close()
        await b_active.target.index.close()
        await b_index.close()
        await engine.dispose()
