"""docker-compose.yml checked statically (no Docker engine here): real commands, real
settings, pinned images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.main import get_command

from handwerk.cli import app
from handwerk.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_every_handwerk_service_runs_a_real_command() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    services = compose()["services"]
    roles = {name: svc["command"] for name, svc in services.items() if "command" in svc}
    assert {"api", "relay", "consumer-1", "consumer-2"} <= set(roles)
    for name, command in roles.items():
        assert command[0] == "handwerk" and command[1] in commands, (name, command)
    consumers = [n for n, c in roles.items() if c[1] == "consume"]
    assert len(consumers) >= 2


def test_every_handwerk_variable_is_a_setting() -> None:
    fields = {f"HANDWERK_{name.upper()}" for name in Settings.model_fields}
    for name, svc in compose()["services"].items():
        for variable in svc.get("environment", {}):
            if variable.startswith("HANDWERK_"):
                assert variable in fields, (name, variable)
    # and the production environment actually validates
    env = compose()["services"]["api"]["environment"]
    settings = Settings(**{k.removeprefix("HANDWERK_").lower(): v for k, v in env.items()})
    assert settings.index_backend == "qdrant" and settings.kafka_enable_idempotence


def test_images_are_pinned_and_data_is_on_named_volumes() -> None:
    spec = compose()
    for name, svc in spec["services"].items():
        image = svc.get("image")
        assert image and ":" in image and not image.endswith(":latest"), name
    assert {"kafka-data", "qdrant-data", "handwerk-data"} <= set(spec["volumes"])
    assert "KRaft" in (ROOT / "docker-compose.yml").read_text() or \
        spec["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
