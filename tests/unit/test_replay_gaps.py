"""A catch-up from stored offsets is complete only where the log still starts at or below them:
retention (or DeleteRecords) that moved a partition's log start past a generation's offsets
took the events in between, a delete among them, so that generation must not be activated."""

from __future__ import annotations

import pytest

from handwerk.generations.handover import refuse_unreplayable
from handwerk.generations.jobs import HandoverRefused
from handwerk.generations.replay import replay_gaps


def test_offsets_at_or_above_the_log_start_replay_completely() -> None:
    assert replay_gaps({0: 10, 1: 5}, {0: 10, 1: 0}) == {}
    assert replay_gaps({0: 10, 1: 5}, {}) == {}  # no log start read: nothing known to be lost


def test_an_offset_below_the_log_start_is_a_gap() -> None:
    assert replay_gaps({0: 10, 1: 5}, {0: 11, 1: 5}) == {0: (10, 11)}


def test_replay_all_means_from_offset_zero() -> None:
    """``offsets={}`` (a crashed active generation, "replay all on rollback") and a partition
    the generation never recorded both replay from 0: a log start above 0 is a gap."""
    assert replay_gaps({}, {0: 0, 1: 0}) == {}
    assert replay_gaps({}, {0: 3, 1: 0}) == {0: (0, 3)}
    assert replay_gaps({0: 7}, {0: 7, 1: 2}) == {1: (0, 2)}


def test_a_gap_refuses_the_activation_naming_the_rebuild_from_the_database() -> None:
    refuse_unreplayable("g0003", {0: 10, 1: 4}, {0: 10, 1: 4})  # complete: allowed
    with pytest.raises(HandoverRefused) as refused:
        refuse_unreplayable("g0003", {}, {0: 0, 1: 9})
    message = str(refused.value)
    assert "g0003" in message and "reindex --from db" in message and "partition 1" in message
