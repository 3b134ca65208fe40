"""The eval as tables: one row per query class, then ``overall``; then, when the document has
an estimate section, one row per estimate method and baseline."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from handwerk.relevance.metrics import ordered
from handwerk.relevance.queries import CLASSES


def render(document: dict[str, Any]) -> RenderableType:
    relevance = render_relevance(document)
    if not document.get("estimate"):
        return relevance
    return Group(relevance, render_estimate(document["estimate"]))


def render_estimate(section: dict[str, Any]) -> Table:
    latency = section["latency_ms"]
    table = Table(title=(
        f"price estimates: {section['answered']} of {section['held_out']} held-out projects "
        f"answered, interval stated {section['coverage_stated']:.0%}; latency p50 "
        f"{latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms (server p50 "
        f"{latency['server_p50']:.1f} ms)"), title_justify="left")
    for column in ("method", "MAPE", "median APE", "coverage"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, row in section["methods"].items():
        table.add_row(name + (" (served)" if row["served"] else ""), f"{row['mape']:.3f}",
                      f"{row['median_ape']:.3f}", f"{row['coverage']:.3f}",
                      style="bold" if row["served"] else None)
    for name, row in section["baselines"].items():
        table.add_row(f"baseline: {name}", f"{row['mape']:.3f}", f"{row['median_ape']:.3f}", "")
    table.caption = ("the served method beats both baselines" if section["beats_baselines"]
                     else "the served method does NOT beat both baselines")
    return table


def render_relevance(document: dict[str, Any]) -> Table:
    service, corpus, queries = document["service"], document["corpus"], document["queries"]
    answered = "/".join(service.get("answered_by") or []) or "?"
    mode = service["mode"] or f"default mode: {answered}"
    title = (f"relevance: {service['model']} ({mode}), "
             f"{corpus['projects']} projects (seed {corpus['seed']}), {queries['scored']} queries")
    table = Table(title=title, title_justify="left")
    for column in ("class", "queries", "nDCG@10", "recall@10", "MRR"):
        table.add_column(column, justify="left" if column == "class" else "right")
    metrics = document["metrics"]
    for name in ordered(metrics, CLASSES):
        row = metrics[name]
        style = "bold" if name == "overall" else None
        table.add_row(name, str(row["queries"]), f"{row['ndcg@10']:.3f}", f"{row['recall@10']:.3f}",
                      f"{row['mrr']:.3f}", style=style, end_section=name == "overall")
    if queries["left_out"]:
        table.caption = (f"{len(queries['left_out'])} queries left out: no relevant project among "
                         f"{corpus['projects']}")
    return table
