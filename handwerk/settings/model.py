"""The one settings object: frozen groups per stage, loaded from ``HANDWERK_*`` variables once.

The environment contract is flat (``HANDWERK_KAFKA_TOPIC``, ``HANDWERK_CONSUMER_GROUP``); the
object is grouped (``settings.kafka.topic``, ``settings.consumer.group``). The flat loader is
built from the groups' own field definitions (``Group.flat_names``), so each field, its
default, bounds and description are written once. ``Settings(...)`` takes flat names
(``Settings(data_dir=..., kafka_topic=...)``), groups (``kafka=KafkaSettings(...)`` or a dict,
as ``model_dump`` gives them), or nothing; unnamed fields come from the environment.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from handwerk.settings.groups import (
    AccessSettings,
    ApiSettings,
    ConsumerSettings,
    DatabaseSettings,
    EmbeddingSettings,
    GenerationSettings,
    Group,
    IndexSettings,
    KafkaSettings,
    ObservabilitySettings,
    ReconcileSettings,
    RelaySettings,
)
from handwerk.settings.rules import (
    SECRET_FILE_FIELDS,
    check_database,
    check_index,
    check_kafka,
    read_secret_files,
    without_password,
)

GROUPS: dict[str, type[Group]] = {
    "database": DatabaseSettings, "kafka": KafkaSettings, "consumer": ConsumerSettings,
    "relay": RelaySettings, "reconcile": ReconcileSettings, "index": IndexSettings,
    "embedding": EmbeddingSettings, "generations": GenerationSettings,
    "observability": ObservabilitySettings, "api": ApiSettings, "access": AccessSettings,
}


class _TopLevel(BaseModel):
    """What belongs to no stage: the data folder, and the test-only crash point."""

    data_dir: Path = Path("./data")
    crash_point: str | None = Field(
        default=None, description="TEST ONLY: SIGKILL this process at the named point "
        "(see handwerk/process/crash_points.py). Never set in production.")


# flat name -> (group or None for top level, field name)
_FLAT: dict[str, tuple[str | None, str]] = {name: (None, name) for name in _TopLevel.model_fields}
for _group, _cls in GROUPS.items():
    _FLAT.update({flat: (_group, field) for field, flat in _cls.flat_names().items()})


class _Environment(BaseSettings):
    """The flat loader: reads ``HANDWERK_<FLAT NAME>`` and secret files."""

    # Errors never repeat the input: it holds secrets (passwords, API keys).
    model_config = SettingsConfigDict(env_prefix="HANDWERK_", frozen=True, extra="forbid",
                                      hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        return read_secret_files(data, SECRET_FILE_FIELDS) if isinstance(data, dict) else data


def _field_of(group: str | None, name: str) -> tuple[Any, Any]:
    model = _TopLevel if group is None else GROUPS[group]
    info = model.model_fields[name]
    return info.annotation, copy.copy(info)


_Loader = create_model(  # type: ignore[call-overload]
    "_Loader", __base__=_Environment,
    **{flat: _field_of(group, name) for flat, (group, name) in _FLAT.items()})


class Settings(BaseModel):
    """Every field has a default that works for the local, embedded run."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # The defaults below are what the loader fills in anyway (environment unset); they are
    # declared so that ``Settings()`` type-checks.
    data_dir: Path = Path("./data")
    crash_point: str | None = None
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    generations: GenerationSettings = Field(default_factory=GenerationSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)

    @model_validator(mode="before")
    @classmethod
    def _load(cls, data: Any) -> Any:
        """Flatten whatever was given, load the rest from the environment, regroup."""
        if not isinstance(data, dict):
            return data
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in GROUPS:
                given = value.model_dump() if isinstance(value, BaseModel) else dict(value)
                names = GROUPS[key].flat_names()
                unknown = set(given) - set(names)
                if unknown:
                    raise ValueError(f"unknown {key} settings: {sorted(unknown)}")
                flat.update({names[field]: v for field, v in given.items()})
            elif key in _FLAT:
                flat[key] = value
            else:
                raise ValueError(f"unknown setting {key!r}")
        loaded = _Loader(**flat)
        grouped: dict[str, Any] = {name: getattr(loaded, name) for name in _TopLevel.model_fields}
        for group, group_cls in GROUPS.items():
            grouped[group] = group_cls(**{field: getattr(loaded, flat_name)
                                          for field, flat_name in group_cls.flat_names().items()})
        return grouped

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        check_kafka(self.kafka)
        check_index(self.index)
        check_database(self.database)
        return self

    def __repr_args__(self) -> Any:
        """``database.url`` may carry a password (README): repr and str show it masked."""
        for name, value in super().__repr_args__():
            if name == "database" and value.url is not None:
                value = value.model_copy(update={"url": without_password(value.url)})
            yield name, value

    def replaced(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, by flat name (``kafka_bootstrap_servers=...``) or
        group, validated like a load (``model_copy(update=...)`` validates nothing)."""
        current: dict[str, Any] = {name: getattr(self, name) for name in _TopLevel.model_fields}
        current.update({group: getattr(self, group).model_dump() for group in GROUPS})
        return Settings(**current, **changes)

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Settings:
        """Refuses names that are not fields (a flat name would be set silently and read by
        nobody); use ``replaced`` for flat names."""
        unknown = set(update or ()) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"not a settings field: {sorted(unknown)} (use Settings.replaced)")
        return super().model_copy(update=update, deep=deep)

    @property
    def resolved_database_url(self) -> str:
        url = self.database.url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'handwerk.db'}"
        if self.database.password is None:
            return url
        from sqlalchemy.engine import make_url

        return make_url(url).set(password=self.database.password.get_secret_value()) \
            .render_as_string(hide_password=False)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def vector_cache_path(self) -> Path:
        """Computed vectors shared by importer and consumer (``handwerk.embedding.vector_cache``)."""
        return self.data_dir / "vector-cache.sqlite"


def environment_variables() -> dict[str, Any]:
    """Every ``HANDWERK_*`` variable with its default (the public surface test freezes it)."""
    out: dict[str, Any] = {}
    for name, field in _Loader.model_fields.items():
        default = field.get_default(call_default_factory=True)
        out[f"HANDWERK_{name.upper()}"] = None if default is None else str(default)
    return out
