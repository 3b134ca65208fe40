"""Judges a chaos history the way Jepsen's Kafka checker does, against the database, the
outbox and the index opened directly once every process has stopped.

Properties (each is a key of ``Verdict.properties``; all must hold for PASS):

- ``no_acknowledged_write_lost``: for every write the API acknowledged, the database still
  holds that version of the project or a newer one (a deleted row is the newest version), and
  the index reflects the database: a live project is indexed at least at its database version,
  a deleted one is a tombstone.
- ``applied_version_never_backwards``: judged by what the index stored, not by what the apply
  journal claims (the journal records what passed the consumer's pre-read guard; the index
  write is conditional and may refuse it). Two parts:
  (a) during the run, the version the index stored for each project, sampled through the API
      (`indexed_version`, one request at a time, see ``IndexSampler``), never decreases, and a
      point once stored never disappears;
  (b) at the end, the version the index stores for every project equals the newest version that
      project ever had: the highest of its outbox events (every version the database emitted,
      reconcile's tombstones included; rows are kept for the whole run), its acknowledged
      writes, the journal's applies and the run's samples. Lower: an applied or acknowledged
      version was lost or overwritten by an older one. Higher: the index holds a version nobody
      wrote. One allowance, possible only with reconcile on: a deleted project may end on the
      tombstone reconcile emitted for it (version held + 1, below the lost delete's version)
      if that is not below anything the journal applied or a sample saw; and a project created
      and deleted whose every event a broker restart wiped may have no point at all (reported
      as ``deleted_projects_whose_events_the_broker_restart_wiped``); with a tombstone horizon
      set (``History.tombstone_horizon_s``), a project whose acknowledged delete is older than
      the horizon at the last write may have no point at all (a compaction dropped its
      tombstone; reported as ``deleted_projects_whose_tombstone_passed_the_horizon``).
- ``no_aborted_write_indexed``: every live point was acknowledged, or its request's outcome is
  unknown (it may have committed before the crash); no rejected (4xx) write is in the database.
- ``final_state_equal``: database and index agree exactly (drift 0: nothing missing, stale or
  orphaned), every live point's text hash is its row's, and there are as many live points as rows.
- ``converged``: the harness saw the index catch up with the database (it waits while the
  backlog shrinks, and gives up after a minute without progress or at its deadline).
- ``no_reconcile_reemit`` (pipeline-only variant only): ``reemitted_by_reconcile == 0``.
  Reconcile re-emits through the outbox with CloudEvent source ``urn:handwerk:outbox:reconcile``;
  the count is taken from the outbox (published rows are kept for the run). With reconcile
  off, any other property holding with this count above 0 would prove nothing about the
  pipeline. The count is reported in both variants (details ``reemitted_by_reconcile``).

The journal's own decreases (a stale event the pre-read guard let through and the conditional
write refused, harmless by design) are reported as ``journal_backwards``, not judged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from handwerk.contract.events import SOURCE
from handwerk.contract.text import project_text, text_hash
from handwerk.embedding.specs import DEFAULT_MODEL_NAME
from handwerk.index.catalog import AliasFolder
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.operations.reconcile import find_drift
from handwerk.outbox.database import create_engine, session_factory
from handwerk.outbox.models import OutboxRow
from handwerk.outbox.store import ProjectStore, project_data
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


RECONCILE_SOURCE = f"{SOURCE}:reconcile"


@dataclass(frozen=True, slots=True)
class OutboxFacts:
    newest: dict[str, int]  # per project, the highest version it ever emitted
    reemitted_by_reconcile: list[tuple[str, int]]  # (project id, version) re-emitted by reconcile
    rows: int
    unpublished: int


async def read_outbox(store: ProjectStore) -> OutboxFacts:
    newest: dict[str, int] = {}
    reemitted: list[tuple[str, int]] = []
    rows = unpublished = 0
    async with store.sessions() as session:
        result = await session.execute(select(
            OutboxRow.project_id, OutboxRow.version, OutboxRow.event, OutboxRow.published_at))
        for pid, version, event, published_at in result.all():
            rows += 1
            unpublished += published_at is None
            newest[pid] = max(newest.get(pid, 0), version)
            try:
                source = json.loads(event).get("source")
            except (json.JSONDecodeError, AttributeError):
                source = None
            if source == RECONCILE_SOURCE:
                reemitted.append((pid, version))
    return OutboxFacts(newest, reemitted, rows, unpublished)


async def check(data_dir: Path, journal: Path, history: History, index_alias: str, *,
                database_url: str | None = None) -> Verdict:
    """``database_url``: where the processes wrote (default: the SQLite file in ``data_dir``,
    the embedded run's); the index is always the one in ``data_dir``."""
    verdict = Verdict()
    engine = create_engine(database_url or f"sqlite+aiosqlite:///{data_dir / 'handwerk.db'}")
    store = ProjectStore(session_factory(engine))
    # opened as the live generation records it (the model that built it, its dimension)
    folder = AliasFolder(data_dir / "index", index_alias)
    current = folder.current()
    meta = folder.read_meta(current) if current is not None else None
    index = EdgeVectorIndex(data_dir / "index", index_alias,
                            model=meta.model if meta is not None else DEFAULT_MODEL_NAME,
                            dimension=meta.dimension if meta is not None else 384)
    await index.open()
    try:
        drift = await find_drift(store, index)
        states = await index.all_states()
        db = await store.versions()
        rows = {pid: await store.get(pid) for pid in db}
        live_ids = [pid for pid, s in states.items() if not s.deleted]
        payload_mismatch = [pid for pid in live_ids if pid in rows and
                            states[pid].text_hash != text_hash(project_text(project_data(rows[pid])))]
        outbox = await read_outbox(store)
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
    # 2. the version the index stores per project never goes backwards
    entries = read_journal(journal)
    journal_newest: dict[str, int] = {}
    journal_backwards = []
    for entry in entries:
        for pid, version, _kind in entry.get("applied", []):
            if version < journal_newest.get(pid, 0):
                journal_backwards.append((pid, journal_newest[pid], version))
            journal_newest[pid] = max(journal_newest.get(pid, 0), version)
    # (a) sampled during the run
    backwards = [{"id": pid, "sampled": seq} for pid, seq in history.index_observed.items()
                 if any(later < earlier for earlier, later in zip(seq, seq[1:], strict=False))]
    # (b) at the end: stored == newest version the project ever had
    newest: dict[str, int] = defaultdict(int)
    sources: list[dict[str, int]] = [outbox.newest, db, journal_newest]
    sources += [{pid: max(seq)} for pid, seq in history.index_observed.items()]
    sources += [{w["id"]: w["version"]} for w in history.acknowledged]
    for versions in sources:
        for pid, version in versions.items():
            newest[pid] = max(newest[pid], version)
    reconcile_tombstones: dict[str, set[int]] = defaultdict(set)
    for pid, version in outbox.reemitted_by_reconcile:
        if pid not in db:
            reconcile_tombstones[pid].add(version)
    # when the latest acknowledged delete of each project was answered (time.time())
    deleted_at = {w["id"]: w["t"] for w in history.acknowledged if w["op"] == "delete"}
    last_write = max((w["t"] for w in history.acknowledged), default=0.0)
    not_newest = []
    lost_with_the_log = 0
    dropped_past_horizon = 0
    for pid, version in newest.items():
        stored = states[pid].version if pid in states else None
        seen = max(journal_newest.get(pid, 0), *history.index_observed.get(pid, [0]))
        # reconcile tombstones an orphan at (the version the index held) + 1: when the broker
        # lost several events of a deleted project, that is below the delete's version but is
        # the repair's decision, not a loss (never in the pipeline-only variant: no reconcile)
        by_reconcile = (stored is not None and states[pid].deleted and stored >= seen
                        and stored in reconcile_tombstones.get(pid, ()))
        # a broker restart wipes the memory-only log: a project created and deleted whose every
        # event was lost there never reached the index at all. Nothing was regressed, and no
        # older event of it can arrive from a log that no longer exists (with-reconcile only:
        # the pipeline-only variant never restarts the broker)
        wiped = (not history.pipeline_only and history.faults.get("restart_broker", 0) > 0
                 and stored is None and pid not in db and seen == 0)
        if wiped:
            lost_with_the_log += 1
        # a compaction dropped the tombstone of a delete older than the horizon: no point is
        # right (the project is gone, and the horizon refuses older upserts); a delete younger
        # than the horizon must still have its tombstone, and a point left at an older version
        # is a resurrection: both stay reported
        dropped = (history.tombstone_horizon_s is not None and stored is None and pid not in db
                   and pid in deleted_at
                   and deleted_at[pid] <= last_write - history.tombstone_horizon_s)
        if dropped:
            dropped_past_horizon += 1
        if stored != version and not by_reconcile and not wiped and not dropped:
            not_newest.append({"id": pid, "stored": stored, "newest": version,
                               "in_database": pid in db, "outbox": outbox.newest.get(pid),
                               "journal": journal_newest.get(pid),
                               "sampled": history.index_observed.get(pid)})
    verdict.properties["applied_version_never_backwards"] = not backwards and not not_newest
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
    # 5. the harness saw convergence before its deadline
    verdict.properties["converged"] = history.converged
    # 6. pipeline only: nothing was repaired by reconcile
    if history.pipeline_only:
        verdict.properties["no_reconcile_reemit"] = not outbox.reemitted_by_reconcile
    verdict.details = {
        "writes_acknowledged": len(history.acknowledged),
        "writes_indeterminate": len(history.indeterminate),
        "writes_aborted_4xx": len(history.aborted),
        "faults": dict(history.faults), "faults_total": sum(history.faults.values()),
        "final_drift": drift.summary(),
        "payload_mismatch": len(payload_mismatch),
        "variant": "pipeline-only" if history.pipeline_only else "with-reconcile",
        "deleted_projects_whose_events_the_broker_restart_wiped": lost_with_the_log,
        "deleted_projects_whose_tombstone_passed_the_horizon": dropped_past_horizon,
        "converge_error": history.converge_error,
        "reemitted_by_reconcile": len(outbox.reemitted_by_reconcile),
        "reemitted_ids": sorted({pid for pid, _ in outbox.reemitted_by_reconcile})[:10],
        "index_points_last_written_by_reconcile": sum(
            1 for s in states.values() if s.source == RECONCILE_SOURCE),
        "outbox_rows": outbox.rows, "outbox_unpublished": outbox.unpublished,
        "lost": lost[:5], "lost_count": len(lost),
        "backwards": backwards[:5], "backwards_count": len(backwards),
        "not_newest": not_newest[:5], "not_newest_count": len(not_newest),
        "journal_backwards": journal_backwards[:5],
        "index_samples": history.index_samples,
        "index_projects_sampled": len(history.index_observed),
        "unexplained_live": unexplained[:5],
        "duplicates_or_stale_skipped": sum(e.get("skipped", 0) for e in entries),
        "events_applied": sum(len(e.get("applied", [])) for e in entries),
        "dead_lettered": sum(len(e.get("dead", [])) for e in entries),
        "poison_sent": history.poison_sent,
        "projects_in_database": len(db),
    }
    return verdict
