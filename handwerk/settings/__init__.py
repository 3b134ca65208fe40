"""One frozen settings object, read from ``HANDWERK_*`` variables at the entry point only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field has a default that works for the local, embedded run."""

    model_config = SettingsConfigDict(env_prefix="HANDWERK_", frozen=True, extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file in data_dir."
    )
    # PostgreSQL (outbox/database.py): the password may come from a file (a docker secret)
    # instead of the URL, so neither compose files nor process listings carry it.
    database_password: SecretStr | None = None
    database_password_file: Path | None = Field(
        default=None, description="File holding the database password (read at load).")

    # Kafka
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Unset: `handwerk serve` starts the local tansu broker."
    )
    kafka_topic: str = "handwerk.projects"
    kafka_dlq_topic: str = "handwerk.projects.dlq"
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_enable_idempotence: bool = Field(
        default=False, description="On for Apache Kafka; the local tansu broker rejects it."
    )
    kafka_session_timeout_ms: int = 10_000
    kafka_commit_timeout_s: float = 10.0
    consumer_group: str = "handwerk-indexer"

    # Consumer micro-batches
    batch_max_records: int = Field(default=256, ge=1)
    batch_max_wait_ms: int = Field(default=10, ge=1, description="Extra wait to fill a batch, "
                                   "taken only while the broker reported more records queued.")
    consumer_fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=500, description="How long the broker may hold an empty fetch. Apache "
        "Kafka answers as soon as a record arrives; tansu holds it the whole time, so with tansu "
        "this bounds broker -> fetched latency (and an idle consumer sends 1000/this fetches/s).")

    # Relay
    relay_poll_interval_s: float = 0.5
    relay_linger_ms: int = Field(
        default=0, ge=0, le=1000, description="Producer linger: the relay queues its whole batch "
        "before awaiting acks, so batches form without it; any linger is added to every write's "
        "time to searchable.")
    relay_batch_size: int = 500
    outbox_retention_s: float = 3600.0
    relay_lease_ttl_s: float = 10.0
    topic_check_interval_s: float = 5.0
    reconcile_interval_s: float = Field(
        default=300.0, ge=0, description="Periodic drift check in the consuming process; 0: off.")
    reconcile_on_start: bool = Field(
        default=True, description="Repair drift before serving (needed with the memory-only broker).")

    # Vector index
    index_backend: Literal["edge", "qdrant"] = "edge"
    index_alias: str = Field(
        default="handwerk_projects", description="Name search uses; points at a generation."
    )
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: str | None = Field(
        default=None, description="qdrant-client local mode (tests only): folder or ':memory:'."
    )

    # Secured Kafka and Qdrant (client options built in handwerk/settings/security.py). Each secret may
    # come from a file instead (``*_FILE``: a docker secret); rules are checked at load.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: FilePath | None = None
    kafka_ssl_cafile: FilePath | None = Field(
        default=None, description="CA that signed the brokers' certificates; unset: system CAs.")
    kafka_ssl_certfile: FilePath | None = Field(
        default=None, description="Client certificate (mutual TLS); needs kafka_ssl_keyfile.")
    kafka_ssl_keyfile: FilePath | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: FilePath | None = None
    qdrant_api_key_file: FilePath | None = None
    qdrant_ca_file: FilePath | None = Field(
        default=None, description="CA that signed the Qdrant server's certificate (https URL).")
    qdrant_verify_tls: bool = Field(
        default=True, description="false: accept any server certificate (tests only).")

    # Embedding
    model_path: Path | None = Field(
        default=None, description="Local sentence-transformers folder; default: bundled model."
    )
    embedding_backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="onnx: same weights exported once, identical vectors, faster.")
    model_cache_dir: Path | None = Field(
        default=None, description="Where the ONNX export is cached; default: data_dir/models.")
    embedding_threads: int = Field(
        default=1, ge=1, description="Threads for ingest embedding (1 leaves a core for serving).")
    query_threads: int = Field(default=1, ge=1, description="Threads for query embedding.")
    embedding_latency_threads: int = Field(
        default=2, ge=0, description="Threads for a document call of at most 4 texts (a lone "
        "write, not ingest under load; onnx backend): its time to searchable, at the cost of "
        "both cores for those ~13 ms. 0 or at most embedding_threads: off (no extra session, "
        "about 90 MB).")
    query_quantization: Literal["none", "int8"] = Field(
        default="none", description="int8: queries run a dynamically quantized copy of the ONNX "
        "export, made once in model_cache_dir (onnx backend only; documents and the index stay "
        "fp32). Kept off by default unless scripts/eval_int8.py shows recall@10 against fp32 "
        ">= 0.95 and a speed-up; measured on 5,000 demo projects: 2x faster but recall@10 "
        "0.92, so off.")
    embedding_batch_size: int = Field(
        default=16, ge=1, description="Texts per encoder run. 16 rather than 32: as fast or "
        "faster here (46-48 vs 40-45 documents/s) and about 100 MB less ONNX arena.")
    query_batch_window_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Gather window of a query batch: opened only "
        "while another query is being encoded (a lone query never waits); 0: no extra wait, "
        "queries that arrive during a run still share the next one.")
    query_batch_max: int = Field(
        default=32, ge=1, description="Most query texts per encoder run; 1: no batching.")
    query_cache_size: int = Field(
        default=1024, ge=0, description="Query vectors remembered (LRU, by model and text); 0: off.")

    # Generations: reindex, backfill, model switch, compaction
    tombstone_horizon_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="A rebuilt generation keeps tombstones of "
        "deletes younger than this; an upsert older than a dropped tombstone is refused.")
    handover_lock_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest the handover may hold the live consumer's "
        "write lock for its last catch-up; past it the switch is abandoned.")
    generation_grace_s: float = Field(
        default=3600.0, ge=0, description="A replaced generation is kept this long (rollback).")
    reindex_min_agreement: float = Field(
        default=0.5, ge=0, le=1, description="Model switch gate: agreement@10 with the live "
        "generation on a fixed query set; below it the switch is refused unless forced.")
    reindex_min_completeness: float = Field(
        default=0.98, ge=0, le=1, description="The new generation must hold at least this share "
        "of the live generation's projects (a topic that lost events), unless forced.")
    compaction_check_interval_s: float = Field(
        default=60.0, gt=0, description="How often serve checks whether to compact the index.")
    compaction_unindexed_points: int = Field(
        default=10_000, ge=1, description="Compact once this many points written since the last "
        "build are outside the HNSW graph (Qdrant Edge indexes only in optimize()).")
    compaction_tombstone_ratio: float = Field(default=0.25, gt=0, le=1)
    compaction_min_tombstones: int = Field(default=1_000, ge=1)

    consumer_unready_after_s: float = Field(
        default=5.0, ge=0, description="A dependency outage this long turns /readyz red.")

    crash_point: str | None = Field(
        default=None, description="TEST ONLY: SIGKILL this process at the named point "
        "(see handwerk/process/crash_points.py). Never set in production.")

    apply_journal: Path | None = Field(
        default=None, description="Append-only JSON-lines audit of applied/skipped/dead-lettered.")

    # Observability
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics for "
                              "`relay` and `consume` (serve/api expose it on their HTTP port).")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="/metrics port for `relay` and `consume`; unset: off.")
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="How often the lag monitor reads committed offsets and "
                                       "high watermarks from the broker.")

    # API
    host: str = "127.0.0.1"
    port: int = 8000
    wait_indexed_max_s: float = 30.0
    max_body_bytes: int = 1_000_000
    max_pending_searches: int = Field(
        default=64, ge=1, description="Queries waiting for the encoder at once; beyond: 503.")
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio", description="Event loop of serve/api (uvloop: libuv; see the bench "
        "A/B in README before switching).")

    # API keys and rate limits (handwerk/access/auth.py, handwerk/access/keys.py, handwerk/access/limits.py)
    auth_mode: Literal["auto", "required", "off"] = Field(
        default="auto", description="auto: keys are required once any active key exists; "
        "required: always; off: never (refused beyond loopback unless allow_open).")
    auth_protect_reads: bool = Field(
        default=False, description="Searches, stats and project reads need a `read` key too.")
    auth_protect_metrics: bool = Field(
        default=True, description="/metrics on the HTTP port needs a `metrics` or `admin` key "
        "while keys are enforced.")
    auth_cache_ttl_s: float = Field(
        default=5.0, ge=0, le=300, description="Key lookups are cached this long: a revoked "
        "key stops working within it.")
    allow_open: bool = Field(
        default=False, description="serve/api may listen beyond loopback without API keys.")
    rate_limit_per_s: float = Field(
        default=0.0, ge=0, description="Requests per second per key (per client address while "
        "open); 0: no limit. A key's own rate (`keys create --rate`) overrides it.")
    rate_limit_burst: int = Field(
        default=0, ge=0, description="Token bucket size; 0: two seconds' worth (at least 1).")
    auth_failure_rate_per_s: float = Field(
        default=10.0, gt=0, description="Per client address: requests that need a key lookup "
        "or fail the key check (no, unknown or revoked key), per second; always on.")
    auth_failure_burst: int = Field(
        default=20, ge=1, description="Token bucket size of auth_failure_rate_per_s.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        from handwerk.settings.security import SECRET_FILE_FIELDS, read_secret_files

        return read_secret_files(data, SECRET_FILE_FIELDS) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _secured_clients(self) -> Settings:
        from handwerk.settings.security import check_security_settings

        check_security_settings(self)
        return self

    @model_validator(mode="after")
    def _one_qdrant_location(self) -> Settings:
        if self.index_backend == "qdrant" and (self.qdrant_url is None) == (self.qdrant_path is None):
            raise ValueError("index_backend=qdrant needs exactly one of qdrant_url or qdrant_path")
        return self

    @model_validator(mode="before")
    @classmethod
    def _database_password_from_file(cls, data: Any) -> Any:
        from handwerk.settings.security import read_secret_files

        return read_secret_files(data, ("database_password",)) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _database_password_needs_a_server(self) -> Settings:
        if self.database_password is not None and (
                self.database_url is None or self.database_url.startswith("sqlite")):
            raise ValueError("database_password needs a database_url of a server (PostgreSQL)")
        return self

    def __repr_args__(self) -> Any:
        """``database_url`` may carry a password (README): repr and str show it masked."""
        for name, value in super().__repr_args__():
            if name == "database_url" and value is not None:
                value = _without_password(value)
            yield name, value

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'handwerk.db'}"
        if self.database_password is None:
            return url
        from sqlalchemy.engine import make_url

        return make_url(url).set(password=self.database_password.get_secret_value()) \
            .render_as_string(hide_password=False)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def vector_cache_path(self) -> Path:
        """Computed vectors shared by importer and consumer (``handwerk.embedding.vector_cache``)."""
        return self.data_dir / "vector-cache.sqlite"


def _without_password(url: str) -> str:
    """``url`` with its password as ``***``; a URL SQLAlchemy cannot parse is hidden whole."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL, hidden>"


def environment_variables() -> dict[str, Any]:
    """Every ``HANDWERK_*`` variable with its default (the public surface test freezes it)."""
    out: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        out[f"HANDWERK_{name.upper()}"] = None if default is None else str(default)
    return out
