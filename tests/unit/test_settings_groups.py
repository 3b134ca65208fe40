"""The grouped settings object: flat names in, groups out, nothing set silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from handwerk.settings import Settings, environment_variables
from handwerk.settings.model import GROUPS


def test_flat_keywords_land_in_their_groups(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, kafka_topic="t", consumer_group="g", auth_mode="off",
                 generation_grace_s=5, qdrant_url=None)
    assert (s.kafka.topic, s.consumer.group, s.access.mode, s.generations.grace_s) == ("t", "g", "off", 5)


def test_the_environment_is_read_by_flat_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDWERK_CONSUMER_GROUP", "from-env")
    monkeypatch.setenv("HANDWERK_BATCH_MAX_RECORDS", "7")
    s = Settings()
    assert (s.consumer.group, s.consumer.batch_max_records) == ("from-env", 7)
    assert Settings(consumer_group="given").consumer.group == "given"  # a keyword wins


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        Settings(kafka_topik="typo")
    with pytest.raises(ValueError, match="unknown kafka settings"):
        Settings(kafka={"topik": "typo"})


def test_a_nested_dump_round_trips(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, kafka_topic="t", embedding_threads=2)
    assert Settings(**s.model_dump()) == s


def test_replaced_validates_and_model_copy_refuses_flat_names(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.replaced(kafka_bootstrap_servers="127.0.0.1:9").kafka.bootstrap_servers == "127.0.0.1:9"
    with pytest.raises(ValueError):
        s.replaced(kafka_partitions=0)  # bounds hold as at load
    with pytest.raises(ValueError, match="not a settings field"):
        s.model_copy(update={"kafka_bootstrap_servers": "x:1"})  # would be set and read by nobody


def test_every_group_field_has_one_variable() -> None:
    names = [flat for cls in GROUPS.values() for flat in cls.flat_names().values()]
    assert len(names) == len(set(names))
    assert {f"HANDWERK_{n.upper()}" for n in names} | {"HANDWERK_DATA_DIR", "HANDWERK_CRASH_POINT"} \
        == set(environment_variables())
