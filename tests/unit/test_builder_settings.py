"""The builder child's settings: the serving process's settings reach the child whole, secrets
included, yet neither a secret nor a password-bearing URL is written into ``request.json``.

A round trip through the real parts, without a broker and without a child process: the
parent prepares the request (``prepare``), the child's start is captured (its command and
environment), and the child's entry point builds its ``Settings`` under that environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from handwerk.cli.generations import build_generation
from handwerk.generations import builder, child, prepare
from handwerk.generations.builder import REQUEST
from handwerk.generations.jobs import ReindexJob
from handwerk.generations.replay import TopicPosition
from handwerk.settings import Settings

SECRETS = ("pw-sasl-7f3a", "pw-key-91c2", "pw-qdrant-55de", "pw-db-e04b")


class _Started:
    returncode = 0

    def __init__(self) -> None:
        self.pid = 4242

    async def wait(self) -> int:
        return 0


async def _position(_settings: Settings) -> TopicPosition:
    return TopicPosition({0: 7, 1: 3}, {0: 7, 1: 3})


def prepared(settings: Settings, gdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``request.json`` the parent writes for a rebuild from the topic."""
    monkeypatch.setattr(prepare, "read_position", _position)
    gdir.mkdir(parents=True, exist_ok=True)
    job = ReindexJob(kind="reindex", source="topic", model="m", generation="g0002",
                     reuse_vectors=False)
    live = SimpleNamespace(embedder=SimpleNamespace(model_name="m"), refuse_creations_before=None)
    asyncio.run(prepare.prepare(job, gdir, live, settings, None))  # type: ignore[arg-type]
    return (gdir / REQUEST).read_text()


def in_child(settings: Settings, gdir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What ``handwerk build-generation`` builds with, once the parent started it."""
    started: dict[str, Any] = {}

    async def exec_(*argv: str, **options: Any) -> _Started:
        started.update(argv=argv, **options)
        return _Started()

    monkeypatch.setattr(child.asyncio, "create_subprocess_exec", exec_)
    asyncio.run(child.BuilderChild().run(gdir, settings))
    assert started["argv"][-2:] == ("build-generation", str(gdir))

    # the child: the environment it was started with, nothing else of the test's
    environment: dict[str, str] = started["env"]
    for name in [n for n in os.environ if n.upper().startswith("HANDWERK_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        if name.upper().startswith("HANDWERK_"):
            monkeypatch.setenv(name, value)
    built: list[Settings] = []

    async def build(child_settings: Settings, folder: Path) -> None:
        assert folder == gdir
        built.append(child_settings)

    monkeypatch.setattr(builder, "build", build)
    build_generation(gdir)
    return built[0]


def test_secrets_given_in_code_reach_the_builder_but_not_its_request_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sasl, key, qdrant, db = SECRETS
    keyfile = tmp_path / "client.pem"
    keyfile.write_text("not a real key")
    settings = Settings(
        data_dir=tmp_path / "data", kafka_bootstrap_servers="broker-1:9093",
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="indexer",
        kafka_sasl_password=sasl, kafka_ssl_certfile=keyfile, kafka_ssl_keyfile=keyfile,
        kafka_ssl_key_password=key, index_backend="qdrant", qdrant_url="https://qdrant.example",
        qdrant_api_key=qdrant, database_url=f"postgresql+asyncpg://handwerk:{db}@db.example/hw",
        kafka_topic="t.projects", generation_grace_s=60)
    gdir = tmp_path / "g0002"

    written = prepared(settings, gdir, monkeypatch)
    for secret in SECRETS:
        assert secret not in written
    assert "**********" not in written  # no masked secret for the child to use either
    assert "db.example" not in written  # the database URL (it may carry a password)

    built = in_child(settings, gdir, monkeypatch)
    assert built == settings  # every field, secrets compared by value
    assert built.kafka.sasl_password is not None
    assert built.kafka.sasl_password.get_secret_value() == sasl
    assert db in built.resolved_database_url


def test_secrets_read_from_files_reach_the_builder_but_not_its_request_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sasl, _, _, db = SECRETS
    (tmp_path / "sasl").write_text(f"{sasl}\n")
    (tmp_path / "db").write_text(db)
    monkeypatch.setenv("HANDWERK_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "sasl"))
    settings = Settings(
        data_dir=tmp_path / "data", kafka_bootstrap_servers="broker-1:9092",
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="indexer",
        database_url="postgresql+asyncpg://handwerk@db.example/hw",
        database_password_file=tmp_path / "db")
    gdir = tmp_path / "g0002"

    written = prepared(settings, gdir, monkeypatch)
    assert sasl not in written
    assert db not in written
    assert "**********" not in written  # what the child read as its password

    built = in_child(settings, gdir, monkeypatch)
    assert built == settings
    assert built.kafka.sasl_password is not None
    assert built.kafka.sasl_password.get_secret_value() == sasl
    assert built.database.password is not None
    assert built.database.password.get_secret_value() == db


def test_a_secret_unset_in_code_stays_unset_in_the_builder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child inherits the parent's environment; a value the parent's settings override
    (here: no SASL at all) must not come back from that environment in the child."""
    monkeypatch.setenv("HANDWERK_KAFKA_SASL_PASSWORD", "pw-from-environment")
    monkeypatch.setenv("HANDWERK_DATABASE_URL", "postgresql+asyncpg://u:pw@elsewhere/hw")
    settings = Settings(data_dir=tmp_path / "data", kafka_sasl_password=None, database_url=None)
    gdir = tmp_path / "g0002"
    written = prepared(settings, gdir, monkeypatch)
    assert "pw-from-environment" not in written
    built = in_child(settings, gdir, monkeypatch)
    assert built == settings
    assert built.kafka.sasl_password is None and built.database.url is None
