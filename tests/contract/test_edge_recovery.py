"""Qdrant Edge after a stop without a clean close: the payload indexes are rebuilt from the
stored payloads, because qdrant-edge 0.9.0 can come back from a SIGKILL with a payload index
that disagrees with the stored payload for the batch that was in flight (measured by
scripts/edge_crash_consistency.py). The conditional write compares against the stored
payload: `version` is not indexed at all."""

from __future__ import annotations

from pathlib import Path

import qdrant_edge as qe

from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.protocol import PAYLOAD_INDEXES, UpsertPoint

DIM = 8


def _index(root: Path) -> EdgeVectorIndex:
    return EdgeVectorIndex(root, "p", model="m", dimension=DIM)


def _marker(root: Path) -> Path:
    return root / "p" / "g0001" / "CLEAN_SHUTDOWN"


def _schema(root: Path) -> set[str]:
    shard = qe.EdgeShard.load(str(root / "p" / "g0001" / "shard"))
    try:
        return set(shard.info().payload_schema)
    finally:
        shard.close()


async def test_a_clean_close_leaves_a_marker_that_the_next_open_consumes(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.open()
    assert not _marker(tmp_path).exists()
    await index.close()
    assert _marker(tmp_path).exists()
    again = _index(tmp_path)
    await again.open()
    assert not _marker(tmp_path).exists()  # a crash from here on is an unclean stop
    await again.close()


async def test_an_unclean_stop_rebuilds_the_indexes_and_drops_a_version_index(tmp_path: Path) -> None:
    index = _index(tmp_path)
    await index.open()
    await index.write([UpsertPoint("0b0e8c5e-4f6c-4f3e-9f53-3a3c1f1f0d01", 3, [0.1] * DIM,
                                   {"version": 3, "state": "live", "project_type": "kitchen"})], [])
    await index.close()
    # an older shard: `version` indexed; then a crash (no marker)
    shard = qe.EdgeShard.load(str(tmp_path / "p" / "g0001" / "shard"))
    shard.update(qe.UpdateOperation.create_field_index("version", qe.PayloadSchemaType.Integer))
    shard.flush()
    shard.close()
    _marker(tmp_path).unlink()
    assert "version" in _schema(tmp_path)

    reopened = _index(tmp_path)
    await reopened.open()
    await reopened.close()
    assert _schema(tmp_path) == set(PAYLOAD_INDEXES)
    assert "version" not in PAYLOAD_INDEXES

    guarded = _index(tmp_path)  # the guard still works without the index
    await guarded.open()
    pid = "0b0e8c5e-4f6c-4f3e-9f53-3a3c1f1f0d01"
    await guarded.write([UpsertPoint(pid, 2, [0.2] * DIM, {"version": 2, "state": "live"})], [])
    assert (await guarded.get_states([pid]))[pid].version == 3
    await guarded.write([UpsertPoint(pid, 4, [0.2] * DIM, {"version": 4, "state": "live"})], [])
    assert (await guarded.get_states([pid]))[pid].version == 4
    await guarded.close()
