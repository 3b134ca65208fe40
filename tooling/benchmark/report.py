"""The rich table of a results document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render(document: Mapping[str, Any]) -> Any:
    """The rich table of a document from ``run_benchmark``."""
    from rich.table import Table

    machine = document["machine"]
    config = document["config"]
    caption = (f"{machine.get('cpu_model') or '?'}, {machine.get('cpus_usable')}/"
               f"{machine.get('cpu_count')} cores usable, Python {machine.get('python')}, commit "
               f"{(machine.get('git_commit') or '?')[:10]}{' (dirty)' if machine.get('git_dirty') else ''}, "
               f"load {machine.get('load_average')}; {config['projects']:,} projects")
    tally_ = document["tally"]
    table = Table(title=f"handwerk bench: {tally_['met']} met, {tally_['missed']} missed, "
                        f"{tally_['n/a']} n/a", caption=caption)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("")
    styles = {"met": "[green]met[/green]", "missed": "[red]missed[/red]", "n/a": "[yellow]n/a[/yellow]"}
    for row in document["rows"]:
        label = row["label"].replace("N clients", f"{config['throughput_clients']} clients")
        table.add_row(label, row["shown"], row["target"] or "",
                      styles.get(row["verdict"], "") if row["verdict"] else "")
    return table
