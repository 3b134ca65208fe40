"""The pure parts of issue 18 §4/§5: what counts as in flight, which lag reads say the log was
lost, and what a check repairs at once."""

from __future__ import annotations

from handwerk.operations.in_flight import InFlight
from handwerk.operations.lag import LagSnapshot, PartitionLag
from handwerk.operations.log_loss import LogLoss, lost_between
from handwerk.operations.reconcile import DriftReport
from handwerk.operations.reconcile_loop import repair_now


def snapshot(*parts: tuple[int | None, int]) -> LagSnapshot:
    return LagSnapshot("g", "t", 0.0, tuple(
        PartitionLag(n, committed, high, None, None, None) for n, (committed, high) in enumerate(parts)))


def test_an_event_at_the_database_version_or_newer_is_in_flight() -> None:
    seen = InFlight({"a": 3})
    assert seen.covers("a", 3) and seen.covers("a", 2)
    assert not seen.covers("a", 4) and not seen.covers("b", 1)


def test_an_intact_log_says_nothing() -> None:
    assert lost_between(snapshot((5, 8), (None, 0)), snapshot((7, 9), (None, 2))) is None


def test_a_high_watermark_that_falls_is_a_lost_log() -> None:
    assert "high watermark fell from 8 to 1" in (lost_between(snapshot((5, 8)), snapshot((None, 1))) or "")


def test_committed_offsets_that_vanish_or_go_back_are_a_lost_log() -> None:
    assert "went from 5 to None" in (lost_between(snapshot((5, 8)), snapshot((None, 8))) or "")
    assert "went from 5 to 2" in (lost_between(snapshot((5, 8)), snapshot((2, 8))) or "")


def test_a_high_watermark_below_the_committed_offset_is_a_lost_log() -> None:
    assert "below the committed offset 5" in (lost_between(snapshot((5, 8)), snapshot((5, 3))) or "")


def test_reports_coalesce_until_taken() -> None:
    loss = LogLoss()
    assert loss.take() is None
    loss.observe(snapshot((5, 8)))
    loss.observe(snapshot((None, 0)))
    loss.report("the relay re-created topic 't'")
    assert loss.pending and loss.reports == 2
    assert loss.take() == "partition 0: high watermark fell from 8 to 0"
    assert not loss.pending and loss.take() is None


def test_a_complete_check_repairs_at_once_but_rewrites_rows_only_when_seen_twice() -> None:
    current = DriftReport(3, 3, missing=["m"], stale=["s"], orphaned=[("o", 2)],
                          hidden=[("h", 4)], ahead=[("a", 9)], in_flight_known=True)
    first = repair_now(None, current)
    assert (first.missing, first.stale, first.orphaned) == (["m"], ["s"], [("o", 2)])
    assert first.hidden == [] and first.ahead == []
    second = repair_now(current, current)
    assert second.hidden == [("h", 4)] and second.ahead == [("a", 9)]


def test_an_incomplete_check_repairs_only_what_it_saw_twice() -> None:
    current = DriftReport(1, 1, missing=["m"], in_flight_known=False)
    assert repair_now(None, current).drift == 0
    assert repair_now(current, current).missing == ["m"]
