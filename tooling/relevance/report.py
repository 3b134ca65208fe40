"""The eval as a table: one row per query class, then ``overall``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from handwerk.relevance.metrics import ordered
from handwerk.relevance.queries import CLASSES


def render(document: dict[str, Any]) -> Table:
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
