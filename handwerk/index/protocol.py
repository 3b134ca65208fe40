"""What the pipeline needs from a vector index, independent of the engine behind it.

Every point id is the project UUID. Every point carries ``version``; writes are
conditional on it inside the engine, so a stale writer (a zombie consumer after a
rebalance, a replay from offset 0) can never overwrite newer state. A deleted project
stays as a tombstone point (``state: "deleted"``) so an older upsert cannot resurrect it;
searches and counts exclude tombstones.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from handwerk.contract.events import ProjectEvent
from handwerk.index.keywords import Fusion

log = logging.getLogger(__name__)

# Qdrant Edge 0.9.0 never matches MatchValue(True) on a bool field, so liveness is a keyword.
LIVE_STATE, DELETED_STATE = "live", "deleted"
# Search filters only. `version` is deliberately not indexed: the conditional write compares
# against the stored payload (what the guard reads), never against an index that a crash can
# leave out of step with it (see edge.adapter._rebuild_payload_indexes).
PAYLOAD_INDEXES = {"project_type": "keyword", "region": "keyword", "final_price": "float",
                   "state": "keyword"}


class IndexUnavailable(RuntimeError):
    """Transient: the index could not be reached, timed out or is overloaded. The consumer
    backs off and retries the same batch, committing nothing."""


class IndexRejected(ValueError):
    """Permanent for this input: the index refused the request itself (e.g. a Qdrant 4xx
    other than 408/429). Retrying the same write can never succeed; the consumer isolates the
    record and dead-letters it."""


class IndexMismatch(RuntimeError):
    """The stored index was built with another model or dimension; needs a reindex."""


@dataclass(frozen=True, slots=True)
class PointState:
    project_id: str
    version: int
    deleted: bool
    text_hash: str | None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PointRecord:
    """A point's state and vector from one read of one stored record: ``state.text_hash`` is
    the hash of the text ``vector`` was embedded from (a writer stores both in one upsert)."""

    state: PointState
    vector: list[float] | None


@dataclass(frozen=True, slots=True)
class UpsertPoint:
    project_id: str
    version: int
    vector: Sequence[float]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Tombstone:
    project_id: str
    version: int
    deleted_at: str | None = None  # the delete event's time (ISO 8601): compaction's rule reads it


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point as stored, vector included (exports for compaction and the vector cache)."""

    project_id: str
    vector: list[float] | None
    payload: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return self.payload.get("state") == DELETED_STATE


@dataclass(frozen=True, slots=True)
class SearchFilters:
    project_type: str | None = None
    region: str | None = None
    min_price: float | None = None
    max_price: float | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    project_id: str
    score: float
    payload: dict[str, Any]
    # a hybrid hit's cosine similarity to the query vector (its score is the fusion's, which
    # means nothing to a person); None for dense hits (score is the cosine) and keyword hits
    cosine: float | None = None


def dense_vector(vector: Any) -> list[float] | None:
    """The dense vector of a stored record, as either engine returns it (a dict of named
    vectors once the generation has a sparse one, else a list)."""
    if isinstance(vector, dict):
        vector = vector.get("")
    return list(map(float, vector)) if isinstance(vector, list) else None  # 1.5x a listcomp


def scored_hits(found: Sequence[Any], vector: Sequence[float] | None,
                text: str | None) -> list[Hit]:
    """Either engine's scored points (``id``, ``score``, ``payload``, ``vector``) as ``Hit``s;
    a hybrid hit (vector and text given) carries its cosine to the query vector."""
    query = vector if text is not None else None
    return [Hit(str(h.id), float(h.score), dict(h.payload or {}),
                cosine(query, dense_vector(h.vector)) if query is not None else None)
            for h in found]


def cosine(query: Sequence[float], vector: Sequence[float] | None) -> float | None:
    """The cosine similarity of two dense vectors (None without a stored vector)."""
    if vector is None:
        return None
    a, b = np.asarray(query, dtype=np.float32), np.asarray(vector, dtype=np.float32)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class IndexStats:
    backend: str
    name: str
    generation: str
    status: str
    points_count: int
    vectors_count: int
    indexed_vectors_count: int
    tombstones_count: int
    model: str
    dimension: int
    extra: dict[str, Any] = field(default_factory=dict)


class VectorIndex(Protocol):
    """Both adapters implement exactly this; the contract tests run against both."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get_states(self, project_ids: Sequence[str]) -> dict[str, PointState]: ...

    async def get_vectors(self, project_ids: Sequence[str]) -> dict[str, list[float]]:
        """Vectors alone. Never pair them with an earlier ``get_states`` to reuse a vector for
        the same text: another writer may rewrite the point between the two reads (use
        ``get_records``)."""
        ...

    async def get_records(self, project_ids: Sequence[str]) -> dict[str, PointRecord]:
        """State and vector of each point, read together in one retrieve, so the text hash
        and the vector belong to the same write (absent points are left out)."""
        ...

    async def write(self, upserts: Sequence[UpsertPoint], tombstones: Sequence[Tombstone], *,
                    visible: Callable[[], None] | None = None) -> None:
        """Apply each point only if its version is newer than the stored one (atomically).

        ``visible`` is called (through ``announce``) on the event loop once searches see the
        write, which may be before it is durable (Qdrant Edge flushes afterwards); returning
        means durable."""
        ...

    @property
    def supports_keywords(self) -> bool:
        """Whether the generation holds keyword (BM25) vectors: one built before they
        existed answers only dense searches."""
        ...

    async def search(
        self, vector: Sequence[float] | None, *, top_k: int, threshold: float,
        filters: SearchFilters, text: str | None = None, fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The mode follows from what is given: ``vector`` alone is a dense search (score:
        cosine, at least ``threshold``); ``text`` alone a keyword search (score: BM25; no
        threshold); both a hybrid search (score: ``fusion``'s; ``threshold`` bounds the dense
        candidates, the keyword candidates qualify by their terms). ``text`` on a generation
        without keyword vectors raises ``KeywordSearchUnavailable``."""
        ...

    async def search_batch(
        self, vectors: Sequence[Sequence[float]] | None, *, top_k: int, threshold: float,
        filters: SearchFilters, texts: Sequence[str] | None = None, fusion: Fusion | None = None,
    ) -> list[list[Hit]]:
        """``search`` for each query (``vectors`` and ``texts`` as many, where given)."""
        ...

    async def all_states(self) -> dict[str, PointState]:
        """Every point's state including tombstones (reconcile reads this)."""
        ...

    async def stats(self) -> IndexStats: ...

    def optimize(self) -> bool:
        """Build pending HNSW segments; blocks (and may hold the GIL). Never call while serving."""
        ...

    def iter_points(self, *, page: int = 256) -> AsyncIterator[list[StoredPoint]]:
        """Every point with vector and payload, tombstones included, a page at a time."""
        ...

    async def drop_tombstones(self, deleted_before: str) -> tuple[int, str | None]:
        """Delete tombstones whose delete time is before ``deleted_before`` (ISO 8601); return
        how many and the newest delete time among them. Tombstones without a time stay."""
        ...


def group_by_version(points: Sequence[UpsertPoint]) -> dict[int, list[UpsertPoint]]:
    """Conditional writes take one filter per operation, so batch points of equal version."""
    groups: dict[int, list[UpsertPoint]] = {}
    for point in points:
        groups.setdefault(point.version, []).append(point)
    return groups


def point_payload(event: ProjectEvent, text_hash: str) -> dict[str, Any]:
    """Everything a search result shows, plus what the guard and reconcile read."""
    return {
        **{k: v for k, v in (event.data or {}).items() if k != "id"},
        "project_id": event.project_id,
        "version": event.version,
        "state": LIVE_STATE,
        "text_hash": text_hash,
        "source": event.source,
        "event_time": event.time.astimezone(UTC).isoformat(),
        "indexed_at": datetime.now(UTC).isoformat(),
    }


def tombstone_payload(version: int, deleted_at: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"version": version, "state": DELETED_STATE}
    if deleted_at is not None:
        payload["deleted_at"] = deleted_at
    return payload


def utc(moment: str) -> datetime:
    """An ISO 8601 time as an aware datetime (a naive one is taken as UTC)."""
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def droppable(payload: dict[str, Any], deleted_before: str) -> bool:
    """A tombstone compaction may drop: one with a delete time before the cutoff."""
    at = payload.get("deleted_at")
    return payload.get("state") == DELETED_STATE and isinstance(at, str) and \
        utc(at) < utc(deleted_before)


def state_from_payload(project_id: str, payload: dict[str, Any] | None) -> PointState:
    payload = payload or {}
    return PointState(
        project_id=project_id, version=int(payload.get("version", 0)),
        deleted=payload.get("state") == DELETED_STATE, text_hash=payload.get("text_hash"),
        source=payload.get("source"),
    )


STATE_FIELDS = ["version", "state", "text_hash", "source"]


def announce(visible: Callable[[], None]) -> None:
    """Run a write's ``visible`` callback; its failure is the caller's bug, never the index's
    (inside the adapters' error mapping it would dead-letter a good batch): logged only."""
    try:
        visible()
    except Exception:
        log.exception("visible callback failed")
