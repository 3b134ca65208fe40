"""Child processes never outlive the process that started them, and background ones yield
the CPU to the serving process."""

from __future__ import annotations

import ctypes
import os
import signal

BACKGROUND_NICENESS = 10

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, even by SIGKILL (pass as a
    ``preexec_fn``). Elsewhere it does nothing."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def as_background() -> None:
    """Lower this process to background priority (pass as part of a ``preexec_fn``): nice
    ``BACKGROUND_NICENESS`` and, on Linux, ``SCHED_BATCH`` (the scheduler treats it as a CPU
    hog and never lets it preempt an interactive thread), so a search in the serving process
    never waits behind a build that uses every core. Each step is best effort."""
    try:
        os.nice(BACKGROUND_NICENESS)
    except OSError:
        pass
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is not None:
        try:
            os.sched_setscheduler(0, batch, os.sched_param(0))
        except OSError:
            pass


def background_child() -> None:
    """``preexec_fn`` of a background child: dies with its parent, yields the CPU."""
    die_with_parent()
    as_background()
