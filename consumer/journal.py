"""An append-only audit log of what the consumer applied, skipped and dead-lettered.

Off by default. Chaos runs and audits read it to check that the applied version of a
project never goes backwards across crashes, restarts and rebalances.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from handwerk.contract.events import ProjectEvent


class ApplyJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _append(self, entry: dict[str, object]) -> None:
        # one write() per line with O_APPEND: lines from several processes never interleave
        os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

    def applied(self, events: Iterable[ProjectEvent], skipped: int) -> None:
        self._append({"t": time.time(), "pid": os.getpid(), "skipped": skipped,
                      "applied": [[e.project_id, e.version, "d" if e.is_delete else "u"]
                                  for e in events]})

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        self._append({"t": time.time(), "pid": os.getpid(), "dead": list(reasons)})

    def close(self) -> None:
        os.close(self._fd)
