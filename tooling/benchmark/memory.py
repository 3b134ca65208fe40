"""The serving process's memory (and its children's, the local broker), from /proc."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tooling.benchmark.server import Server


def read_rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def serve_memory(server: Server) -> dict[str, Any]:
    rss = read_rss_kib(server.pid)
    broker = sum(read_rss_kib(c).get("VmRSS", 0) for c in _children(server.pid))
    return {"serve_rss_mib": round(rss["VmRSS"] / 1024, 1) if "VmRSS" in rss else None,
            "serve_peak_rss_mib": round(rss["VmHWM"] / 1024, 1) if "VmHWM" in rss else None,
            "children_rss_mib": round(broker / 1024, 1)}
