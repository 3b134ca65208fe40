"""Storage exhaustion: recognised by its code, answered, and logged once per episode.

A full disk is an answer, not a crash (issue 18 §7). What counts, by code and never by message
text: SQLite's ``SQLITE_FULL`` (``sqlite3.Error.sqlite_errorcode``; raised for a full
filesystem and for a database at its ``max_page_count``), PostgreSQL's SQLSTATE 53100
(``disk_full``; ``sqlstate`` on asyncpg's and psycopg's errors and on SQLAlchemy's asyncpg
adapter), and ``OSError`` with errno ENOSPC or EDQUOT (the index, the vector cache, any file).
Wrappers are looked through: SQLAlchemy's ``orig``, ``__cause__`` and ``__context__``.

``StorageWatch`` keeps the state of one process: the first refused write of an episode logs one
warning, and one line says it is over (how long it lasted, how many writes were refused) once
every writer that was refused (the API's writes, the relay's marks) has stored a write again;
``/readyz`` shows it as ``components.storage``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PG_DISK_FULL = "53100"
_NO_SPACE = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT"}
_MAX_CHAIN = 16


class StorageFull(Exception):
    """A write was refused because the storage under it is full (the database's disk, the data
    folder's filesystem). Nothing of it was stored; the same write succeeds once space is freed.
    ``reason`` names the code that said so (for logs and ``/readyz``, not for clients)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"storage full: {reason}")
        self.reason = reason


def _own_reason(error: BaseException) -> str | None:
    if isinstance(error, StorageFull):
        return error.reason
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.Error) and isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
        return "database or disk is full (SQLITE_FULL)"
    for attribute in ("sqlstate", "pgcode"):
        if getattr(error, attribute, None) == PG_DISK_FULL:
            return f"database disk full (SQLSTATE {PG_DISK_FULL})"
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        where = f" ({error.filename})" if error.filename else ""
        return f"no space left on device ({_NO_SPACE[error.errno]}){where}"
    return None


def storage_exhausted(error: BaseException) -> str | None:
    """The reason if ``error``, or an error it wraps, is storage exhaustion; else None."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        reason = _own_reason(current)
        if reason is not None:
            return reason
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (statvfs
    ``f_bavail``, what ``df`` shows as available); None if it cannot be read."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class StorageWatch:
    """Whether writes are being refused for lack of space, as one process has seen it.

    ``refused`` is called with the reason of each refused write, ``wrote`` after each write
    that was stored, each naming its writer. The episode ends when every writer refused during
    it has stored again: an update in place (the relay marking rows) may still fit where an
    insert (a new project) does not, and must not end it early. Only the edges log: a warning
    when an episode starts, one info line when it ends. Used on the event loop only."""

    def __init__(self, data_dir: Path | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.data_dir = data_dir
        self._clock = clock
        self.reason: str | None = None
        self.since: float | None = None
        self.refused_writes = 0
        self._refused_writers: set[str] = set()

    @property
    def full(self) -> bool:
        return self.since is not None

    def refused(self, reason: str, writer: str = "writes") -> None:
        self._refused_writers.add(writer)
        if self.since is None:
            self.since = self._clock()
            self.refused_writes = 0
            free = self.free_bytes()
            log.warning("storage full, writes are refused (507) until space is freed: %s; "
                        "data folder %s, %s bytes free", reason, self.data_dir,
                        "unknown" if free is None else free)
        self.reason = reason
        self.refused_writes += 1

    def wrote(self, writer: str = "writes") -> None:
        self._refused_writers.discard(writer)
        if self.since is None or self._refused_writers:
            return
        log.info("storage usable again: writes succeed after %.1f s (%d writes refused; last "
                 "reason: %s)", self._clock() - self.since, self.refused_writes, self.reason)
        self.since = None
        self.reason = None

    def free_bytes(self) -> int | None:
        return None if self.data_dir is None else free_bytes(self.data_dir)

    def component(self) -> dict[str, Any]:
        """For ``/readyz``: ``ok`` or ``full`` with the reason, since when and how many writes
        were refused; the data folder's free bytes either way."""
        out: dict[str, Any] = {"state": "full" if self.full else "ok",
                               "free_bytes": self.free_bytes()}
        if self.since is not None:
            out.update(reason=self.reason, full_for_s=round(self._clock() - self.since, 1),
                       refused_writes=self.refused_writes)
        return out
