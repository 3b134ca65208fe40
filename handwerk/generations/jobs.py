"""A reindex job as the serving process records it: what it builds from, its state, its figures.

Standard library only: the CLI (a client of the admin API) imports the vocabulary from here
without loading the index or the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

from handwerk.timestamps import now_iso

# What a new generation is built from. The admin API's request schema uses the Literal itself
# (its OpenAPI enum), the CLI and the manager the tuple.
SourceName = Literal["topic", "db", "compaction"]
SOURCES: tuple[SourceName, ...] = get_args(SourceName)


class JobState(StrEnum):
    """Where a job stands; the values are what the admin API reports."""

    PREPARING = "preparing"
    BUILDING = "building"
    CATCHING_UP = "catching_up"
    CHECKING = "checking"
    SWITCHING = "switching"
    ACTIVE = "active"
    FAILED = "failed"
    REFUSED = "refused"


DONE_STATES = frozenset({JobState.ACTIVE, JobState.FAILED, JobState.REFUSED})


class ReindexRefused(Exception):
    """The request cannot start now (another job runs, unknown generation, ...)."""


class HandoverRefused(Exception):
    """A gate or the topic refused the new generation: the job ends ``refused``, not ``failed``."""


@dataclass(slots=True)
class ReindexJob:
    kind: str  # reindex | compaction | activate
    source: str  # one of SOURCES, or "rollback" for an activation
    model: str
    generation: str = ""
    state: JobState = JobState.PREPARING
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    error: str | None = None
    phase: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    reuse_vectors: bool = True
    _started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    def end(self, state: JobState, error: str | None = None) -> None:
        self.state, self.error, self.finished_at = state, error, now_iso()

    def as_dict(self, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "model": self.model,
                "reuse_vectors": self.reuse_vectors,
                "generation": self.generation, "state": self.state.value, "phase": self.phase,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "elapsed_s": round(time.monotonic() - self._started, 2), "error": self.error,
                "figures": self.figures, "progress": progress or {}}
