"""The builder child process: started by the serving process for one generation, watched until
it exits, killed with its parent.

The child (``handwerk build-generation FOLDER``, ``builder.py``) reads ``request.json`` from the
generation's folder and reports in ``progress.json`` there; it dies with the serving process
(a half-built generation is removed here, or at the next start).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handwerk.generations.builder import PROGRESS
from handwerk.process.children import die_with_parent


class BuilderChild:
    """At most one builder at a time, so that ``kill`` finds it."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def run(self, gdir: Path, on_start: Callable[[int], None] | None = None) -> None:
        """Build the generation in ``gdir``; ``on_start`` gets the child's pid. Raises if the
        child exits non-zero; cancelled, it kills the child and waits for it."""
        self._process = child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "handwerk", "build-generation", str(gdir),
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if on_start is not None:
            on_start(child.pid)
        try:
            code = await child.wait()
        except asyncio.CancelledError:
            if child.returncode is None:
                child.kill()
                await child.wait()
            raise
        if code != 0:
            raise RuntimeError(f"the builder exited with {code}")

    def kill(self) -> None:
        """Kill a builder still running (its job then fails)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()


def read_progress(gdir: Path) -> dict[str, Any]:
    """What the builder last reported (empty before its first report)."""
    try:
        document: dict[str, Any] = json.loads((gdir / PROGRESS).read_text())
    except (OSError, ValueError):
        return {}
    return document
