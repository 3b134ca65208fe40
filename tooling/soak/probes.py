"""What one sample reads besides the load's window: every process of the serve (RSS, open file
descriptors, from /proc), the size on disk of every top-level entry of the data folder, the rows
the SQLite stores hold, and the service's stats endpoint."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx

_STORE_SUFFIXES = ("-wal", "-shm", "-journal")


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (the local broker, a reindex builder child)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if not Path(f"/proc/{pid}").exists():
            continue
        found.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def role(pid: int, root: int) -> str:
    """A name that survives a restart (the pid does not): serve, broker, builder, or the
    executable's name."""
    if pid == root:
        return "serve"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    exe = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else str(pid)
    if "tansu" in exe:
        return "broker"
    if exe.startswith("python"):
        return "builder"
    return exe


def process_figures(pid: int) -> dict[str, float] | None:
    """RSS in MB and open file descriptors: ``fds`` all of them, ``sockets`` those that are
    sockets (they follow the load: one per client connection held), ``files`` the rest (they
    should not move at all); None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    fds = len(names)
    rss_kib = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmRSS:")), None)
    if rss_kib is None:  # a zombie (killed, not yet reaped): no memory to speak of
        return None
    return {"rss_mb": rss_kib / 1024, "fds": float(fds), "sockets": float(sockets),
            "files": float(fds - sockets)}


def processes(root: int) -> dict[str, dict[str, float]]:
    """Per role; two processes of one role (never seen) would be summed."""
    out: dict[str, dict[str, float]] = {}
    for pid in descendants(root):
        figures = process_figures(pid)
        if figures is None:
            continue
        name = role(pid, root)
        if name in out:
            out[name] = {k: out[name][k] + v for k, v in figures.items()}
        else:
            out[name] = figures
    return out


def _disk_bytes(path: Path) -> int:
    """Bytes allocated on disk (``du``, not the apparent size: the index preallocates files)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_blocks * 512
    except OSError:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_blocks * 512
            except OSError:  # removed while we walked (a segment merged, a generation retired)
                pass
    return total


def store_of(entry: str) -> str:
    """The store a top-level entry belongs to: a SQLite file with its WAL and shared memory."""
    for suffix in _STORE_SUFFIXES:
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def disk(data_dir: Path) -> dict[str, dict[str, float]]:
    """``files``: MB per top-level entry of the data folder, and per generation folder under
    ``index/<alias>/``; ``stores``: MB per store (a SQLite file with its -wal and -shm)."""
    files: dict[str, float] = {}
    try:
        entries = sorted(data_dir.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        files[entry.name] = _disk_bytes(entry) / 1e6
    for alias in sorted((data_dir / "index").glob("*")):
        if alias.is_dir():
            for generation in sorted(alias.iterdir()):
                if generation.is_dir():
                    files[f"index/{alias.name}/{generation.name}"] = _disk_bytes(generation) / 1e6
    stores: dict[str, float] = {}
    for name, mb in files.items():
        if "/" not in name:
            stores[store_of(name)] = stores.get(store_of(name), 0.0) + mb
    return {"files": files, "stores": stores}


def _count(path: Path, tables: tuple[str, ...]) -> int | None:
    """Rows of ``tables`` in a SQLite file, read-only and briefly (a long reader would keep
    the writer's WAL from being checkpointed: exactly the growth this soak looks for)."""
    if not path.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        total = 0
        for table in tables:
            try:
                total += connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            except sqlite3.OperationalError:  # the table does not exist (yet)
                pass
        return total
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def store_items(data_dir: Path, stats: dict[str, Any] | None) -> dict[str, float | None]:
    """What each store holds, to explain its size: rows of the database (projects, outbox,
    delete records), rows of the vector cache, points of the live index generation (live and
    tombstones)."""
    index = None
    if stats and stats.get("points_count") is not None:
        index = float(stats["points_count"] + (stats.get("tombstones_count") or 0))
    database = _count(data_dir / "handwerk.db", ("projects", "outbox", "deleted_projects"))
    cache = _count(data_dir / "vector-cache.sqlite", ("vectors",))
    return {"handwerk.db": None if database is None else float(database),
            "vector-cache.sqlite": None if cache is None else float(cache), "index": index}


async def service_stats(client: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        response = await client.get("/api/v1/similarity/stats", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]
