"""The lag arithmetic and its two renderings (JSON document, table), without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from handwerk.operations.lag import LagSnapshot, PartitionLag
from handwerk.operations.lag_view import format_age, lag_table

T0 = 1_800_000_000.0


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _snapshot() -> LagSnapshot:
    return LagSnapshot("g", "t", T0, (
        PartitionLag(0, committed=4, high_watermark=10, log_start=None,
                     oldest_unapplied_at=_at(T0 - 30), last_applied_at=_at(T0 - 31)),
        PartitionLag(1, committed=None, high_watermark=7, log_start=2,
                     oldest_unapplied_at=_at(T0 - 90), last_applied_at=None),
        PartitionLag(2, committed=5, high_watermark=5, log_start=None,
                     oldest_unapplied_at=None, last_applied_at=_at(T0 - 5)),
    ))


def test_lag_is_high_watermark_minus_committed_or_log_start() -> None:
    p0, p1, p2 = _snapshot().partitions
    assert (p0.lag, p1.lag, p2.lag) == (6, 5, 0)
    assert _snapshot().total_lag == 11


def test_a_committed_offset_beyond_the_log_is_no_negative_lag() -> None:
    """A memory-only broker restarted under the group: the log is shorter than the commit."""
    assert PartitionLag(0, 9, 3, None, None, None).lag == 0


def test_oldest_unapplied_age_grows_with_time_and_is_zero_without_lag() -> None:
    p0, p1, p2 = _snapshot().partitions
    assert p0.oldest_unapplied_age_s(T0) == 30 and p0.oldest_unapplied_age_s(T0 + 10) == 40
    assert p2.oldest_unapplied_age_s(T0 + 10) == 0
    assert _snapshot().oldest_unapplied_age_s() == 90


def test_json_document_lists_partitions_and_totals() -> None:
    doc = _snapshot().as_dict()
    assert (doc["group"], doc["topic"]) == ("g", "t")
    assert doc["totals"] == {"partitions": 3, "lag": 11, "oldest_unapplied_event_age_s": 90.0}
    first = doc["partitions"][0]
    assert first == {"partition": 0, "committed_offset": 4, "high_watermark": 10,
                     "log_start_offset": None, "lag": 6,
                     "oldest_unapplied_event_time": _at(T0 - 30).isoformat(timespec="milliseconds"),
                     "oldest_unapplied_event_age_s": 30.0,
                     "last_applied_event_time": _at(T0 - 31).isoformat(timespec="milliseconds")}
    assert doc["partitions"][1]["committed_offset"] is None
    assert doc["partitions"][2]["oldest_unapplied_event_age_s"] == 0


def test_table_has_a_row_per_partition_and_a_total() -> None:
    console = Console(width=200, record=True)
    console.print(lag_table(_snapshot()))
    text = console.export_text()
    for header in ("PARTITION", "COMMITTED-OFFSET", "HIGH-WATERMARK", "LAG",
                   "OLDEST-UNAPPLIED-AGE", "LAST-APPLIED-EVENT"):
        assert header in text
    rows = [line.split() for line in text.splitlines()]
    assert ["0", "4", "10", "6", "30.0s"] == rows[[r[:1] for r in rows].index(["0"])][:5]
    assert ["1", "-", "7", "5", "1m30s", "-"] in rows
    assert ["total", "11", "1m30s"] in rows


def test_format_age() -> None:
    assert [format_age(s) for s in (0, 4.24, 75, 3 * 3600 + 61)] == ["-", "4.2s", "1m15s", "3h01m"]
