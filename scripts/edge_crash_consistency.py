"""Crash loop against Qdrant Edge: does the index agree with the stored payload after SIGKILL?

A child process applies conditional upserts (slices of 64, flush per batch, as the consumer
does) until the parent SIGKILLs it at a random moment; after each crash the parent reopens the
shard and counts points whose payload index disagrees with their stored payload.

    .venv/bin/python scripts/edge_crash_consistency.py --crashes 25            # raw shard
    .venv/bin/python scripts/edge_crash_consistency.py --crashes 25 --adapter  # EdgeVectorIndex

Without --adapter it reopens the raw shard (qdrant-edge 0.9.0 showed a batch of points whose
`version` index held the new value and the payload the old one after some crashes); with
--adapter it reopens through EdgeVectorIndex.open, which rebuilds the payload indexes after an
unclean stop, and also checks that a conditional write at stored version + 1 is applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import qdrant_edge as qe

DIM = 384


def _config() -> qe.EdgeConfig:
    return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine),
                         hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100,
                                                        full_scan_threshold=10_000,
                                                        max_indexing_threads=0))


def child(shard_path: str, ids_path: str, seed: int) -> None:
    shard = qe.EdgeShard.load(shard_path)
    ids = json.loads(Path(ids_path).read_text())
    rng = random.Random(seed)
    stored = {str(r.id): r.payload["version"] for r in shard.retrieve(ids, True, False)}
    while True:
        groups: dict[int, list[qe.Point]] = {}
        for pid in rng.sample(ids, 256):
            version = stored.get(pid, 0) + rng.choice([1, 1, 2])
            stored[pid] = version
            state = rng.choice(["live", "live", "deleted"])
            groups.setdefault(version, []).append(qe.Point(
                pid, [rng.random() for _ in range(DIM)], {"version": version, "state": state}))
        for version, points in groups.items():
            condition = qe.Filter(must=[qe.FieldCondition(key="version",
                                                          range=qe.RangeFloat(lt=version))])
            for start in range(0, len(points), 64):
                shard.update(qe.UpdateOperation.upsert_points(points[start:start + 64],
                                                              condition=condition))
        shard.flush()


def _count(shard: qe.EdgeShard, pid: str, condition: qe.FieldCondition) -> int:
    return int(shard.count(qe.CountRequest(exact=True, filter=qe.Filter(
        must=[qe.HasIdCondition({pid}), condition]))))


def inconsistent(shard: qe.EdgeShard, ids: list[str]) -> int:
    bad = 0
    for record in shard.retrieve(ids, True, False):
        pid, payload = str(record.id), record.payload
        same_version = _count(shard, pid, qe.FieldCondition(
            key="version", match=qe.MatchValue(payload["version"])))
        same_state = _count(shard, pid, qe.FieldCondition(
            key="state", match=qe.MatchValue(payload["state"])))
        bad += (same_version, same_state) != (1, 1)
    return bad


async def reopen_with_adapter(root: Path, ids: list[str]) -> tuple[int, int]:
    from handwerk.index.edge.adapter import EdgeVectorIndex
    from handwerk.index.protocol import UpsertPoint

    index = EdgeVectorIndex(root, "crash", model="crash-test", dimension=DIM)
    await index.open()
    try:
        shard = index._shard  # noqa: SLF001 - a measurement script looks inside
        assert shard is not None
        bad = inconsistent(shard, ids)
        states = await index.get_states(ids[:300])
        await index.write([UpsertPoint(pid, s.version + 1, [0.5] * DIM,
                                       {"version": s.version + 1, "state": "live"})
                           for pid, s in states.items()], [])
        after = await index.get_states(list(states))
        refused = sum(1 for pid, s in states.items() if after[pid].version != s.version + 1)
        return bad, refused
    finally:
        await index.close()
        (index._alias.generation_dir(index._generation) / "CLEAN_SHUTDOWN").unlink(  # noqa: SLF001
            missing_ok=True)  # the next child crashes again: keep the next open unclean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=25)
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument("--adapter", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    folder = Path(tempfile.mkdtemp())
    ids = [str(uuid.uuid4()) for _ in range(args.points)]
    ids_path = folder / "ids.json"
    ids_path.write_text(json.dumps(ids))
    if args.adapter:
        asyncio.run(reopen_with_adapter(folder, []))  # creates alias, generation and shard
        shard_path = folder / "crash" / "g0001" / "shard"
    else:
        shard_path = folder / "shard"
        shard = qe.EdgeShard.create(str(shard_path), _config())
        for name in ("version", "state"):
            kind = qe.PayloadSchemaType.Integer if name == "version" else qe.PayloadSchemaType.Keyword
            shard.update(qe.UpdateOperation.create_field_index(name, kind))
        shard.flush()
        shard.close()
    rng = random.Random(7)
    totals = {"crashes": 0, "crashes_with_inconsistency": 0, "points_inconsistent": 0,
              "conditional_writes_refused": 0}
    for n in range(args.crashes):
        process = subprocess.Popen([sys.executable, __file__, "--child", str(shard_path),
                                    str(ids_path), str(n)])
        time.sleep(rng.uniform(0.5, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if args.adapter:
            bad, refused = asyncio.run(reopen_with_adapter(folder, ids))
        else:
            shard = qe.EdgeShard.load(str(shard_path))
            bad, refused = inconsistent(shard, ids), 0
            shard.close()
        totals["crashes"] += 1
        totals["crashes_with_inconsistency"] += bad > 0
        totals["points_inconsistent"] += bad
        totals["conditional_writes_refused"] += refused
        print(f"crash {n}: inconsistent points {bad}, conditional writes refused {refused}", flush=True)
    print(json.dumps({"mode": "adapter" if args.adapter else "raw", **totals}))


if __name__ == "__main__":
    main()
