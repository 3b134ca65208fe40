"""The builder child process: started by the serving process for one generation, watched until
it exits, killed with its parent.

The child (``handwerk build-generation FOLDER``, ``builder.py``) reads ``request.json`` from the
generation's folder and reports in ``progress.json`` there; it dies with the serving process
(a half-built generation is removed here, or at the next start).

The child builds with the serving process's settings, which may have been given in code
rather than read from the environment. ``request.json`` (a file on disk) carries every setting
except the secrets and the database URL (it may hold a password); those reach the child through
its own ``HANDWERK_*`` variables, set from the parent's settings (``child_environment``). A
secret read from a file (``*_FILE``) is read again by the child from the file the request names.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import SecretStr

from handwerk.generations.builder import PROGRESS
from handwerk.process.children import background_child
from handwerk.settings import Settings
from handwerk.settings.model import GROUPS

# Settings that may carry a password in plain text: through the environment, like secrets.
_URLS = ("database_url",)


def _flat_values(settings: Settings) -> dict[str, tuple[Any, bool]]:
    """flat name -> (value, whether it is secret), values as ``model_dump(mode="json")``
    gives them, except secrets (their real value)."""
    dumped = settings.model_dump(mode="json")
    out: dict[str, tuple[Any, bool]] = {name: (dumped[name], False)  # data_dir, crash_point
                                        for name in Settings.model_fields if name not in GROUPS}
    for group, cls in GROUPS.items():
        values = getattr(settings, group)
        for name, flat in cls.flat_names().items():
            annotation = cls.model_fields[name].annotation
            if annotation is SecretStr or SecretStr in get_args(annotation):
                secret = getattr(values, name)
                out[flat] = (None if secret is None else secret.get_secret_value(), True)
            else:
                out[flat] = (dumped[group][name], flat in _URLS)
    return out


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings ``request.json`` carries (flat names, as ``Settings(...)`` takes them): all
    but the secrets and the URLs that may carry a password."""
    return {flat: value for flat, (value, secret) in _flat_values(settings).items() if not secret}


def child_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the parent's, with each secret (and URL) of ``settings`` in its
    ``HANDWERK_*`` variable, or none where ``settings`` has none (or reads it from a file the
    request names), so that the inherited environment cannot contradict the parent's settings."""
    env = {**inherited, "PYTHONUNBUFFERED": "1"}
    values = _flat_values(settings)
    for flat, (value, secret) in values.items():
        if not secret:
            continue
        name = f"HANDWERK_{flat.upper()}"
        for key in [k for k in env if k.upper() == name]:  # the loader ignores case
            del env[key]
        from_file = values.get(f"{flat}_file", (None, False))[0] is not None
        if value is not None and not from_file:
            env[name] = value
    return env


class BuilderChild:
    """At most one builder at a time, so that ``kill`` finds it."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def run(self, gdir: Path, settings: Settings,
                  on_start: Callable[[int], None] | None = None) -> None:
        """Build the generation in ``gdir`` (prepared with ``settings``); ``on_start`` gets the
        child's pid. Raises if the child exits non-zero; cancelled, it kills the child and
        waits for it."""
        self._process = child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "handwerk", "build-generation", str(gdir),
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=background_child,
            env=child_environment(settings, os.environ))
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
