"""How ``handwerk lag`` shows a lag snapshot: a table per partition in the manner of
``kafka-consumer-groups --describe``, refreshed in place with ``--watch``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from handwerk.operations.lag import LagMonitor, LagSnapshot, LagUnavailable


def format_age(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _time(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if at else "-"


def lag_table(snapshot: LagSnapshot) -> Table:
    read_at = datetime.fromtimestamp(snapshot.read_at, UTC)
    table = Table(title=f"GROUP {snapshot.group}  TOPIC {snapshot.topic}  "
                        f"read {_time(read_at)} UTC", title_justify="left", show_footer=True,
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("PARTITION", footer="total", justify="right")
    table.add_column("COMMITTED-OFFSET", justify="right")
    table.add_column("HIGH-WATERMARK", justify="right")
    table.add_column("LAG", footer=str(snapshot.total_lag), justify="right")
    table.add_column("OLDEST-UNAPPLIED-AGE", justify="right",
                     footer=format_age(snapshot.oldest_unapplied_age_s()))
    table.add_column("LAST-APPLIED-EVENT (UTC)")
    for p in snapshot.partitions:
        table.add_row(str(p.partition), "-" if p.committed is None else str(p.committed),
                      str(p.high_watermark), str(p.lag),
                      format_age(p.oldest_unapplied_age_s(snapshot.read_at)),
                      _time(p.last_applied_at))
    return table


async def watch_lag(monitor: LagMonitor, console: Console, interval_s: float) -> None:
    """Redraw the table in place every ``interval_s`` until cancelled (Ctrl-C). A failed read
    keeps the last table on screen, with the error under it."""
    with Live(Text("reading the broker..."), console=console, auto_refresh=False) as live:
        last: Table | None = None
        while True:
            try:
                last = lag_table(await monitor.read())
                live.update(last, refresh=True)
            except LagUnavailable as e:
                error = Text(f"read failed: {e}; retrying in {interval_s:g}s", style="red")
                live.update(Group(last, error) if last is not None else error, refresh=True)
            await asyncio.sleep(interval_s)
