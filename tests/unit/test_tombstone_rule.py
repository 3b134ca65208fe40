"""The compaction rules in isolation: which tombstone may go, and when serve compacts."""

from __future__ import annotations

from typing import Any

from handwerk.generations.builder import later
from handwerk.generations.manager import ReindexManager
from handwerk.index.protocol import droppable, tombstone_payload
from handwerk.settings import Settings

CUTOFF = "2026-11-23T12:00:00+00:00"


def test_only_tombstones_deleted_before_the_cutoff_may_go() -> None:
    assert droppable(tombstone_payload(3, "2026-11-23T11:59:59+00:00"), CUTOFF)
    assert not droppable(tombstone_payload(3, "2026-11-23T12:00:00+00:00"), CUTOFF)
    assert not droppable(tombstone_payload(3, "2026-11-24T00:00:00+00:00"), CUTOFF)
    assert not droppable(tombstone_payload(3), CUTOFF)  # no delete time: kept for ever
    live: dict[str, Any] = {"version": 3, "state": "live", "deleted_at": "2020-01-01T00:00:00+00:00"}
    assert not droppable(live, CUTOFF)


def test_times_compare_as_moments_not_as_text() -> None:
    # 13:30+02:00 is 11:30 UTC: before the cutoff, although its text sorts after it
    assert droppable(tombstone_payload(1, "2026-11-23T13:30:00+02:00"), CUTOFF)
    assert droppable(tombstone_payload(1, "2026-11-23T11:00:00"), CUTOFF)  # naive: UTC
    assert later("2026-11-23T13:30:00+02:00", "2026-11-23T12:00:00+00:00") == \
        "2026-11-23T12:00:00+00:00"
    assert later(None, CUTOFF) == CUTOFF and later(None, None) is None


def manager(**settings: Any) -> ReindexManager:
    return ReindexManager(Settings(**settings), None, None, None, None, None)  # type: ignore[arg-type]


def test_compaction_is_due_on_points_outside_the_graph_growing_past_the_threshold() -> None:
    m = manager(compaction_unindexed_points=100)
    assert m.compaction_due(vectors=150, indexed=60, tombstones=0) is None
    assert "outside the HNSW graph" in (m.compaction_due(vectors=160, indexed=60, tombstones=0) or "")
    # an engine that leaves a small collection unindexed even after a build: not again and again
    m._upkeep.baseline.unindexed = 100
    assert m.compaction_due(vectors=160, indexed=60, tombstones=0) is None
    assert m.compaction_due(vectors=260, indexed=60, tombstones=0) is not None


def test_compaction_is_due_on_tombstones_that_grew_since_the_last_one() -> None:
    m = manager(compaction_min_tombstones=10, compaction_tombstone_ratio=0.25)
    assert m.compaction_due(vectors=60, indexed=60, tombstones=20) is not None
    assert m.compaction_due(vectors=100, indexed=100, tombstones=9) is None
    assert m.compaction_due(vectors=1000, indexed=1000, tombstones=20) is None  # 2 %: no
    m._upkeep.baseline.tombstones = 20  # kept (younger than the horizon): wait until more pile up
    assert m.compaction_due(vectors=100, indexed=100, tombstones=25) is None
    assert m.compaction_due(vectors=100, indexed=100, tombstones=30) is not None
