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
- orphaned: live in the index, written from our outbox (or by anyone, for a project the
  database deleted), absent from the database: a delete is emitted at the index's version + 1.
Points written by other sources and unknown to the database are counted as ``external``.

Events still in flight (an unpublished outbox row, or a record at or beyond the group's
committed offset; see ``in_flight.py``) will fix their project without help: with a probe,
what they cover is counted as ``in_flight``, not as drift, so a restart re-emits nothing the
pipeline still carries. Without one (or where the probe could not read everything), only
drift seen twice is worth repairing (``persistent``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Protocol

from handwerk.contract.events import SOURCE
from handwerk.index.protocol import VectorIndex
from handwerk.operations.in_flight import InFlight
from handwerk.outbox.store import ProjectStore


class InFlightProbe(Protocol):
    """``InFlightEvents``: ``start`` before the index read, ``newest`` after the database's."""

    async def start(self) -> None: ...

    async def newest(self, candidates: Collection[str]) -> InFlight: ...


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
    in_flight: int = 0  # differences an event still on its way will fix (not drift)
    in_flight_known: bool = False  # a probe read the outbox and every unapplied record

    @property
    def drift(self) -> int:
        return (len(self.missing) + len(self.stale) + len(self.orphaned) + len(self.hidden)
                + len(self.ahead))

    def summary(self) -> dict[str, object]:
        return {
            "database_projects": self.database_projects, "index_points": self.index_points,
            "missing": len(self.missing), "stale": len(self.stale),
            "orphaned": len(self.orphaned), "hidden": len(self.hidden), "ahead": len(self.ahead),
            "external": self.external, "drift": self.drift, "in_flight": self.in_flight,
        }


async def find_drift(store: ProjectStore, index: VectorIndex,
                     in_flight: InFlightProbe | None = None) -> DriftReport:
    """Compare versions: index first, then the database in keyset pages (the database side
    is never held in memory at once); then drop what an in-flight event covers."""
    if in_flight is not None:
        await in_flight.start()  # the committed offsets: before the index read
    points = await index.all_states()
    missing: list[str] = []
    stale: list[str] = []
    hidden: list[tuple[str, int]] = []
    ahead: list[tuple[str, int]] = []
    seen = 0
    in_db: set[str] = set()
    wanted: dict[str, int] = {}  # missing/stale: the version an event must reach
    async for project_id, version in store.iter_versions():
        seen += 1
        in_db.add(project_id)
        state = points.get(project_id)
        if state is None:
            missing.append(project_id)
            wanted[project_id] = version
        elif state.deleted:
            if state.version < version:
                missing.append(project_id)
                wanted[project_id] = version
            else:
                hidden.append((project_id, state.version))
        elif state.version < version:
            stale.append(project_id)
            wanted[project_id] = version
        elif state.version > version:
            ahead.append((project_id, state.version))
    orphaned, external = [], 0
    # another source's point for a project the database deleted: its delete was refused
    # (the point was ahead), so it is an orphan too, not external
    deleted = await store.deleted_versions(
        p for p, s in points.items() if p not in in_db and not s.deleted
        and not (s.source or "").startswith(SOURCE))
    for project_id, state in points.items():
        if project_id in in_db or state.deleted:
            continue
        if (state.source or "").startswith(SOURCE) or project_id in deleted:
            orphaned.append((project_id, state.version))
        else:
            external += 1
    live_points = sum(1 for s in points.values() if not s.deleted)
    report = DriftReport(database_projects=seen, index_points=live_points, missing=missing,
                         stale=stale, orphaned=orphaned, hidden=hidden, ahead=ahead,
                         external=external)
    if in_flight is None:
        return report
    return await _without_in_flight(report, in_flight, wanted)


async def _without_in_flight(report: DriftReport, probe: InFlightProbe,
                             wanted: dict[str, int]) -> DriftReport:
    """Missing/stale projects an event at their database version (or newer) will reach, and
    orphans a newer event (their delete) will reach, are in flight. Hidden and ahead are not:
    no event at the database's version can pass the index's newer one."""
    candidates = [*report.missing, *report.stale, *(pid for pid, _ in report.orphaned)]
    if not candidates:
        return replace(report, in_flight_known=True)
    seen = await probe.newest(candidates)
    missing = [p for p in report.missing if not seen.covers(p, wanted[p])]
    stale = [p for p in report.stale if not seen.covers(p, wanted[p])]
    orphaned = [(p, v) for p, v in report.orphaned if not seen.covers(p, v + 1)]
    covered = len(candidates) - len(missing) - len(stale) - len(orphaned)
    return replace(report, missing=missing, stale=stale, orphaned=orphaned, in_flight=covered,
                   in_flight_known=seen.complete)


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
        external=current.external, in_flight=current.in_flight,
        in_flight_known=current.in_flight_known)
