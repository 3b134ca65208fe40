"""Drift detection and repair between the database (truth) and the index.

Repair never writes the index: it re-emits events through the outbox, so the normal
pipeline (and its version guard) does the work.

Read order matters: the index is read **first**, then the database. A project created and
indexed between the two reads then looks merely "missing" (a harmless duplicate re-emit),
never "orphaned" (which would tombstone a live project).

Kinds of drift, and their repair:
- missing: live in the database, absent from the index (or tombstoned at an older version):
  re-emit the current state.
- stale: the index holds an older version: re-emit the current state.
- hidden: live in the database but tombstoned in the index at the database's version or
  newer (e.g. an earlier orphan repair that raced a create). Re-emitting at the database's
  version would be refused by the guard forever, so the row is **superseded**: its version is
  raised above the index's, and the new version is emitted.
- ahead: live in the index at a version above the database's (an upstream producer that
  shares the project's version counter wrote it). The database is the source of truth, so the
  row is superseded the same way; otherwise every later write of the project would be refused.
- orphaned: live in the index, written from our outbox, absent from the database: a delete
  is emitted at the index's version + 1.
Points written by other sources and unknown to the database are counted as ``external``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handwerk.contract.events import SOURCE
from handwerk.index.protocol import VectorIndex
from handwerk.outbox.store import ProjectStore


@dataclass(frozen=True, slots=True)
class DriftReport:
    database_projects: int
    index_points: int
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[tuple[str, int]] = field(default_factory=list)
    hidden: list[tuple[str, int]] = field(default_factory=list)
    ahead: list[tuple[str, int]] = field(default_factory=list)
    external: int = 0

    @property
    def drift(self) -> int:
        return (len(self.missing) + len(self.stale) + len(self.orphaned) + len(self.hidden)
                + len(self.ahead))

    def summary(self) -> dict[str, object]:
        return {
            "database_projects": self.database_projects, "index_points": self.index_points,
            "missing": len(self.missing), "stale": len(self.stale),
            "orphaned": len(self.orphaned), "hidden": len(self.hidden), "ahead": len(self.ahead),
            "external": self.external, "drift": self.drift,
        }


async def find_drift(store: ProjectStore, index: VectorIndex) -> DriftReport:
    """Compare versions: index first, then the database in keyset pages (the database side
    is never held in memory at once)."""
    points = await index.all_states()
    missing: list[str] = []
    stale: list[str] = []
    hidden: list[tuple[str, int]] = []
    ahead: list[tuple[str, int]] = []
    seen = 0
    in_db: set[str] = set()
    async for project_id, version in store.iter_versions():
        seen += 1
        in_db.add(project_id)
        state = points.get(project_id)
        if state is None:
            missing.append(project_id)
        elif state.deleted:
            if state.version < version:
                missing.append(project_id)
            else:
                hidden.append((project_id, state.version))
        elif state.version < version:
            stale.append(project_id)
        elif state.version > version:
            ahead.append((project_id, state.version))
    orphaned, external = [], 0
    for project_id, state in points.items():
        if project_id in in_db or state.deleted:
            continue
        if (state.source or "").startswith(SOURCE):
            orphaned.append((project_id, state.version))
        else:
            external += 1
    live_points = sum(1 for s in points.values() if not s.deleted)
    return DriftReport(database_projects=seen, index_points=live_points, missing=missing,
                       stale=stale, orphaned=orphaned, hidden=hidden, ahead=ahead,
                       external=external)


async def repair(store: ProjectStore, report: DriftReport) -> int:
    """Re-emit current state for missing/stale projects, deletes for orphans, and supersede
    hidden/ahead rows above the index's version. Returns the number of events emitted."""
    if report.drift == 0:
        return 0
    emitted = await store.reemit(report.missing + report.stale,
                                 [(pid, version + 1) for pid, version in report.orphaned])
    if report.hidden or report.ahead:
        emitted += await store.supersede(report.hidden + report.ahead)
    return emitted


def persistent(previous: DriftReport | None, current: DriftReport) -> DriftReport:
    """Only what drifted in two consecutive checks: events still in flight are not drift."""
    if previous is None:
        return DriftReport(current.database_projects, current.index_points)

    def ids(pairs: list[tuple[str, int]]) -> set[str]:
        return {pid for pid, _ in pairs}

    before_missing, before_stale = set(previous.missing), set(previous.stale)
    return DriftReport(
        current.database_projects, current.index_points,
        missing=[p for p in current.missing if p in before_missing],
        stale=[p for p in current.stale if p in before_stale],
        orphaned=[(p, v) for p, v in current.orphaned if p in ids(previous.orphaned)],
        hidden=[(p, v) for p, v in current.hidden if p in ids(previous.hidden)],
        ahead=[(p, v) for p, v in current.ahead if p in ids(previous.ahead)],
        external=current.external)
