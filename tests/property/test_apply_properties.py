"""Property tests of the apply logic against the real index adapters and the real model.

Arbitrary interleavings of upserts and deletes for several projects, with duplicates,
redelivered batches, a full replay and shuffled order: the index always ends equal to
the final database state, a delete is never undone by an older upsert, and applying the
same batch twice changes nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handwerk.consumer.applier import IndexApplier
from handwerk.contract.events import DELETED, UPSERTED, ProjectEvent
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.embedder import Embedder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import VectorIndex
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.metrics import Metrics

DESCRIPTIONS = ["Landhausküche mit Insel", "Wangentreppe aus Eiche", "Einbauschrank Dachschräge"]
PROJECTS = [str(uuid.UUID(int=i + 1)) for i in range(4)]


@dataclass(frozen=True)
class Op:
    project: int
    delete: bool
    description: int
    price: int


ops = st.lists(st.builds(Op, st.integers(0, 3), st.booleans(), st.integers(0, 2),
                         st.integers(1, 5)), min_size=1, max_size=25)


def history(operations: list[Op]) -> tuple[list[ProjectEvent], dict[str, ProjectEvent]]:
    """Turn operations into the events the database would emit, and the final event per project."""
    version: dict[str, int] = {}
    alive: dict[str, bool] = {}
    events: list[ProjectEvent] = []
    for op in operations:
        pid = PROJECTS[op.project]
        if op.delete and not alive.get(pid):
            continue  # the API only deletes what exists
        version[pid] = version.get(pid, 0) + 1
        alive[pid] = not op.delete
        data = None if op.delete else {
            "id": pid, "name": "Projekt", "description": DESCRIPTIONS[op.description],
            "project_type": "kitchen", "region": "Bayern", "total_area_sqm": 10.0,
            "wood_type": "Eiche", "complexity": 2, "final_price": float(op.price * 1000)}
        events.append(ProjectEvent(str(uuid.uuid4()), "urn:handwerk:outbox",
                                   DELETED if op.delete else UPSERTED,  # type: ignore[arg-type]
                                   pid, version[pid], datetime.now(UTC), data))
    final = {}
    for event in events:
        final[event.project_id] = event
    return events, final


def make(kind: str, folder: Path, embedder: Embedder) -> VectorIndex:
    if kind == "edge":
        return EdgeVectorIndex(folder, "p", model=embedder.model_name, dimension=embedder.dimension)
    return QdrantServerIndex(alias="p", model=embedder.model_name, dimension=embedder.dimension,
                             connection=QdrantConnection(path=":memory:"))


async def check(kind: str, embedder: Embedder, delivery: list[ProjectEvent],
                cuts: list[int], final: dict[str, ProjectEvent]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        index = make(kind, Path(folder), embedder)
        await index.open()
        try:
            applier = IndexApplier(index, embedder, Metrics())
            bounds = sorted({0, len(delivery), *[c % (len(delivery) + 1) for c in cuts]})
            batches = [delivery[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
            for batch in batches:
                await applier.apply(batch)
                await applier.apply(batch)  # a redelivered batch
            settled = await index.all_states()
            vectors = await index.get_vectors(list(final))
            for batch in batches:  # a replay from offset 0 changes nothing
                await applier.apply(batch)
            for event in reversed(delivery):  # nor does a replay in the worst order
                await applier.apply([event])
            assert await index.all_states() == settled
            assert await index.get_vectors(list(final)) == vectors

            assert set(settled) == set(final)
            for pid, event in final.items():
                state = settled[pid]
                assert state.version == event.version
                assert state.deleted == event.is_delete
                if not event.is_delete:
                    text = project_text(event.data or {})
                    assert state.text_hash == text_hash(text)
                    expected = embedder.encode([text])[0]
                    assert float(np.dot(vectors[pid], expected)) > 0.9999
        finally:
            await index.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=ops, data=st.data(), kind=st.sampled_from(["edge", "qdrant-local"]))
def test_any_delivery_order_converges_to_the_database_state(
        embedder: Embedder, operations: list[Op], data: st.DataObject, kind: str) -> None:
    events, final = history(operations)
    if not events:
        return
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=10), label="duplicates")
    delivery = data.draw(st.permutations(events + duplicates), label="delivery order")
    cuts = data.draw(st.lists(st.integers(0, 60), max_size=6), label="batch cuts")
    asyncio.run(check(kind, embedder, delivery, cuts, final))
