"""A soak's outputs: the rich table of slopes and checks, the PNG of the series (matplotlib,
headless), and the JSON document next to it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tooling.soak.analysis import series


def table(document: dict[str, Any]) -> Any:
    """Slopes (within segments, and raw) with end values, then the verdict's checks."""
    from rich.console import Group
    from rich.table import Table

    slopes = Table(title="Soak: slopes per hour after warm-up (within segments; raw = steps included)")
    for column in ("series", "end", "slope/h", "raw slope/h", "unexplained/h", "unit", "points"):
        slopes.add_column(column, justify="left" if column in ("series", "unit") else "right")

    def show(value: Any) -> str:
        return "-" if value is None else f"{value:,.2f}" if isinstance(value, float) else str(value)

    for name, entry in document["analysis"]["slopes"].items():
        slopes.add_row(name, show(entry.get("end")), show(entry.get("per_hour")),
                       show(entry.get("raw_per_hour")), show(entry.get("unexplained_per_hour")),
                       entry.get("unit", ""), show(entry.get("points")))
    checks = Table(title=f"Verdict: {document['analysis']['verdict']}")
    for column in ("check", "value", "limit", "ok"):
        checks.add_column(column)
    for check in document["analysis"]["checks"]:
        mark = ("[green]ok[/]" if check["judged"] else "[red]not judged[/]") if check["ok"] \
            else "[red]FAIL[/]"
        checks.add_row(check["name"], show(check["value"]), f"{check['limit']} {check['unit']}",
                       mark)
    return Group(slopes, checks)


def plot(document: dict[str, Any], path: Path) -> None:
    """Six panels over minutes since the start, each job and the restart shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = document["samples"]
    fig, axes = plt.subplots(3, 2, figsize=(15, 12), sharex=True)
    panels = axes.flatten()

    def draw(ax: Any, label: str, *path_: str, scale: float = 1.0) -> None:
        points = [(t / 60, math.nan if y is None else y * scale) for t, y in series(samples, *path_)]
        if any(not math.isnan(y) for _, y in points):  # NaN: a gap (a process that was not there)
            ax.plot(*zip(*points, strict=True), label=label, linewidth=1)

    roles = sorted({r for s in samples for r in s.get("processes", {})})
    for role in roles:
        draw(panels[0], role, "processes", role, "rss_mb")
        draw(panels[1], role, "processes", role, "fds")
    stores = sorted({k for s in samples for k in s.get("disk", {}).get("stores", {})})
    for store in stores:
        draw(panels[2], store, "disk", "stores", store)
    for name in ("p50", "p99"):
        draw(panels[3], f"search {name}", "search", name)
        draw(panels[4], f"write->searchable {name}", "searchable", name)
    draw(panels[5], "consumer lag", "lag")
    draw(panels[5], "outbox backlog", "outbox_backlog")
    titles = ["RSS (MB) per process", "open file descriptors per process",
              "disk (MB) per store in the data folder", "search latency (ms, client)",
              "write -> searchable (ms, client, wait_indexed)", "consumer lag / outbox backlog"]
    colours = {"compaction": "tab:orange", "reindex": "tab:green", "restart": "tab:red"}
    for ax, title in zip(panels, titles, strict=True):
        ax.set_title(title, fontsize=10)
        for event in document["events"]:
            ax.axvspan(event["start"] / 60, max(event["end"], event["start"] + 1) / 60,
                       color=colours.get(event["name"], "grey"), alpha=0.2)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in panels[4:]:
        ax.set_xlabel("minutes (shaded: orange compaction, green reindex, red SIGKILL + restart)")
    for ax in panels[3:5]:
        if ax.has_data():
            ax.set_yscale("log")
    fig.suptitle(f"handwerk soak {document['started_at']}: {document['analysis']['verdict']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=1, default=str))
