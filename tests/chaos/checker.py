"""Judges a chaos history the way Jepsen's Kafka checker does, against the database and the
index opened directly once every process has stopped."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handwerk.embedding import DEFAULT_MODEL_NAME, project_text, text_hash
from handwerk.index.edge import EdgeVectorIndex
from handwerk.outbox.database import create_engine, session_factory
from handwerk.outbox.store import ProjectStore, project_data
from handwerk.reconcile import find_drift
from tests.chaos.harness import History


@dataclass
class Verdict:
    properties: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.properties.values())


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by SIGKILL mid-write
            continue
    return entries


async def check(data_dir: Path, journal: Path, history: History, index_alias: str) -> Verdict:
    verdict = Verdict()
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'handwerk.db'}")
    store = ProjectStore(session_factory(engine))
    index = EdgeVectorIndex(data_dir / "index", index_alias, model=DEFAULT_MODEL_NAME, dimension=384)
    await index.open()
    try:
        drift = await find_drift(store, index)
        states = await index.all_states()
        db = await store.versions()
        rows = {pid: await store.get(pid) for pid in db}
        live_ids = [pid for pid, s in states.items() if not s.deleted]
        payload_mismatch = [pid for pid in live_ids if pid in rows and
                            states[pid].text_hash != text_hash(project_text(project_data(rows[pid])))]
    finally:
        await index.close()
        await engine.dispose()

    # 1. no acknowledged write lost: the database still holds it or a newer version of the
    #    project (a deleted row is the newest version), and the index reflects that version
    deletes = {w["id"] for w in history.acknowledged + history.indeterminate if w["op"] == "delete"}
    lost = []
    for w in history.acknowledged:
        pid, state = w["id"], states.get(w["id"])
        if pid in db:
            if db[pid] < w["version"] or state is None or state.version < db[pid]:
                lost.append(w)
        elif pid not in deletes or (state is not None and not state.deleted):
            lost.append(w)
    verdict.properties["no_acknowledged_write_lost"] = not lost
    # 2. the applied version per project never goes backwards
    entries = read_journal(journal)
    last: dict[str, int] = {}
    backwards = []
    for entry in entries:
        for pid, version, _kind in entry.get("applied", []):
            if version < last.get(pid, 0):
                backwards.append((pid, last[pid], version))
            last[pid] = max(last.get(pid, 0), version)
    verdict.properties["applied_version_never_backwards"] = not backwards
    # 3. no aborted write reaches the index: every indexed (id, version) was acknowledged,
    #    or its request's outcome is unknown (it may have committed before the crash)
    known: dict[str, set[int]] = defaultdict(set)
    for w in history.acknowledged:
        known[w["id"]].add(w["version"])
    unknown_ids = {w["id"] for w in history.indeterminate if w.get("id")}
    creates_unknown = sum(1 for w in history.indeterminate if w["op"] == "create")
    unexplained = [pid for pid in live_ids if pid not in known and pid not in unknown_ids]
    verdict.properties["no_aborted_write_indexed"] = len(unexplained) <= creates_unknown and all(
        not rows[pid].name.startswith("ABORTED") for pid in rows)
    # 4. final state equal
    verdict.properties["final_state_equal"] = drift.drift == 0 and not payload_mismatch and \
        len(live_ids) == len(db)
    verdict.details = {
        "writes_acknowledged": len(history.acknowledged),
        "writes_indeterminate": len(history.indeterminate),
        "writes_aborted_4xx": len(history.aborted),
        "faults": dict(history.faults), "faults_total": sum(history.faults.values()),
        "final_drift": drift.summary(),
        "payload_mismatch": len(payload_mismatch),
        "lost": lost[:5], "backwards": backwards[:5], "unexplained_live": unexplained[:5],
        "duplicates_or_stale_skipped": sum(e.get("skipped", 0) for e in entries),
        "events_applied": sum(len(e.get("applied", [])) for e in entries),
        "dead_lettered": sum(len(e.get("dead", [])) for e in entries),
        "poison_sent": history.poison_sent,
        "projects_in_database": len(db),
    }
    return verdict
