"""Drift detection and repair between the database (truth) and the index.

Repair never writes the index: it re-emits events through the outbox, so the normal
pipeline (and its version guard) does the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handwerk.events import SOURCE
from handwerk.index.base import VectorIndex
from handwerk.outbox.store import ProjectStore


@dataclass(frozen=True, slots=True)
class DriftReport:
    database_projects: int
    index_points: int
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphaned: list[tuple[str, int]] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)
    external: int = 0

    @property
    def drift(self) -> int:
        return len(self.missing) + len(self.stale) + len(self.orphaned)

    def summary(self) -> dict[str, object]:
        return {
            "database_projects": self.database_projects, "index_points": self.index_points,
            "missing": len(self.missing), "stale": len(self.stale),
            "orphaned": len(self.orphaned), "ahead": len(self.ahead),
            "external": self.external, "drift": self.drift,
        }


async def find_drift(store: ProjectStore, index: VectorIndex) -> DriftReport:
    """Compare versions. Points written by upstream systems (another event source) and not in
    the database are theirs, not orphans; they are counted as ``external``."""
    db = await store.versions()
    points = await index.all_states()
    missing, stale, ahead = [], [], []
    for project_id, version in db.items():
        state = points.get(project_id)
        if state is None or (state.deleted and state.version < version):
            missing.append(project_id)
        elif state.version < version:
            stale.append(project_id)
        elif state.version > version and not state.deleted:
            ahead.append(project_id)
    orphaned, external = [], 0
    for project_id, state in points.items():
        if project_id in db or state.deleted:
            continue
        if (state.source or "").startswith(SOURCE):
            orphaned.append((project_id, state.version))
        else:
            external += 1
    live_points = sum(1 for s in points.values() if not s.deleted)
    return DriftReport(database_projects=len(db), index_points=live_points, missing=missing,
                       stale=stale, orphaned=orphaned, ahead=ahead, external=external)


async def repair(store: ProjectStore, report: DriftReport) -> int:
    """Re-emit current state for missing/stale projects and deletes for orphans."""
    if report.drift == 0:
        return 0
    return await store.reemit(report.missing + report.stale,
                              [(pid, version + 1) for pid, version in report.orphaned])


def persistent(previous: DriftReport | None, current: DriftReport) -> DriftReport:
    """Only what drifted in two consecutive checks: events still in flight are not drift."""
    if previous is None:
        return DriftReport(current.database_projects, current.index_points)
    before_missing, before_stale = set(previous.missing), set(previous.stale)
    before_orphaned = {pid for pid, _ in previous.orphaned}
    return DriftReport(
        current.database_projects, current.index_points,
        missing=[p for p in current.missing if p in before_missing],
        stale=[p for p in current.stale if p in before_stale],
        orphaned=[(p, v) for p, v in current.orphaned if p in before_orphaned],
        ahead=current.ahead, external=current.external)
