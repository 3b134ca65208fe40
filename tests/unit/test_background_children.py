"""A builder child runs at background priority (issue "use the whole machine"): it may embed on
every core because a search in the serving process preempts it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from handwerk.process.children import BACKGROUND_NICENESS, background_child

PROBE = "import os; print(os.nice(0), os.sched_getscheduler(0))"


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux only")
def test_a_background_child_is_niced_and_batch_scheduled() -> None:
    ours = os.nice(0)
    out = subprocess.run([sys.executable, "-c", PROBE], preexec_fn=background_child,
                         capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == min(19, ours + BACKGROUND_NICENESS)
    assert int(out[1]) == os.SCHED_BATCH
    # the parent is untouched
    assert os.nice(0) == ours and os.sched_getscheduler(0) != os.SCHED_BATCH


def test_the_builder_child_is_started_in_the_background() -> None:
    """The builder's launch uses it (read from the source: starting a real build is the
    integration suite's job)."""
    import inspect

    from handwerk.generations import child

    assert "preexec_fn=background_child" in inspect.getsource(child.BuilderChild.run)
