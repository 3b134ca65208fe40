"""The public surface is frozen against snapshots taken before the shared layer was rearranged:
every ``HANDWERK_*`` variable with its default, every CLI command with its options, the OpenAPI
document and the metric names. A rename that a user would notice fails here.

After a deliberate change, regenerate with ``HANDWERK_UPDATE_SNAPSHOTS=1 pytest -k public_surface``
and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer

from handwerk.api.app import create_app
from handwerk.cli.main import app as cli_app
from handwerk.metrics import Metrics
from handwerk.settings import Settings, environment_variables

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
UPDATE = os.environ.get("HANDWERK_UPDATE_SNAPSHOTS") == "1"


def _check(name: str, actual: Any) -> None:
    path = SNAPSHOTS / name
    text = json.dumps(actual, indent=1, sort_keys=True, default=str) + "\n"
    if UPDATE:
        path.write_text(text)
        return
    expected = json.loads(path.read_text())
    assert json.loads(text) == expected, f"{name} changed: regenerate only for a deliberate change"


def test_environment_variables_and_defaults() -> None:
    _check("environment.json", environment_variables())


def _describe(command: Any, path: str, into: dict[str, Any]) -> None:
    params = []
    for p in command.params:
        params.append({"name": p.name, "opts": sorted(p.opts + p.secondary_opts),
                       "required": p.required, "default": repr(p.default),
                       "help": getattr(p, "help", None), "hidden": getattr(p, "hidden", False)})
    into[path] = {"help": command.help, "hidden": command.hidden, "params": params}
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            _describe(sub, f"{path} {name}", into)


def test_cli_commands_and_options() -> None:
    described: dict[str, Any] = {}
    _describe(typer.main.get_command(cli_app), "handwerk", described)
    _check("cli.json", described)


def test_openapi_document(tmp_path: Path) -> None:
    _check("openapi.json", create_app(Settings(data_dir=tmp_path)).openapi())


def test_metric_names() -> None:
    _check("metrics.json", sorted((m.name, m.type) for m in Metrics().registry.collect()))


@pytest.mark.parametrize("name", ["environment.json", "cli.json", "openapi.json", "metrics.json"])
def test_snapshot_exists(name: str) -> None:
    assert (SNAPSHOTS / name).is_file()
