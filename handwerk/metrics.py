"""Prometheus metrics, on a registry owned by whoever builds the process (no globals), and the
small HTTP server that exposes it from processes without an API (``relay``, ``consume``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from handwerk.embedding.vector_cache import file_bytes
from handwerk.process.storage import free_bytes

log = logging.getLogger(__name__)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# write -> searchable stages: fine where a write at rest spends its tens of milliseconds
_STAGE = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
          0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "handwerk_ml_request_duration_seconds", "HTTP request duration",
            ["method", "endpoint"], buckets=_FAST, registry=r)
        self.request_errors = Counter(
            "handwerk_ml_request_errors_total", "HTTP responses with status >= 400",
            ["endpoint"], registry=r)
        self.active_requests = Gauge(
            "handwerk_ml_active_requests", "HTTP requests in flight", ["endpoint"], registry=r)
        self.requests = Counter(
            "handwerk_ml_requests_total", "HTTP responses by route template and status code",
            ["method", "endpoint", "status"], registry=r)
        self.query_cache_hits = Counter(
            "handwerk_ml_query_cache_hits_total", "Search query texts whose vector came from the "
            "query cache (by model and text)", registry=r)
        self.query_cache_misses = Counter(
            "handwerk_ml_query_cache_misses_total", "Search query texts not in the query cache "
            "(embedded)", registry=r)
        self.query_batch_size = Histogram(
            "handwerk_ml_query_batch_size", "Distinct texts per query encoder run (concurrent "
            "searches share a run)", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.process_info = Gauge(
            "handwerk_ml_process_info", "Always 1: which role this process runs, and its version",
            ["role", "version"], registry=r)
        self.outbox_backlog = Gauge(
            "handwerk_ml_outbox_backlog", "Outbox rows not yet acknowledged by the broker",
            registry=r)
        self.outbox_oldest_age = Gauge(
            "handwerk_ml_outbox_oldest_age_seconds", "How long the oldest outbox row not yet "
            "acknowledged by the broker has waited (0: none waits)", registry=r)
        self.relay_publish_seconds = Histogram(
            "handwerk_ml_relay_publish_seconds", "Time to publish one outbox batch with acks=all",
            buckets=_FAST, registry=r)
        self.relay_published = Counter(
            "handwerk_ml_relay_published_total", "Outbox events acknowledged by the broker",
            registry=r)
        self.relay_errors = Counter(
            "handwerk_ml_relay_errors_total", "Failed relay publish attempts", registry=r)
        self.consumer_lag = Gauge(
            "handwerk_ml_consumer_lag", "High watermark minus position, per partition",
            ["topic", "partition"], registry=r)
        self.events_applied = Counter(
            "handwerk_ml_events_applied_total", "Events written to the index", ["type"], registry=r)
        self.events_skipped = Counter(
            "handwerk_ml_events_skipped_total", "Events not applied (duplicate, stale, coalesced)",
            ["reason"], registry=r)
        self.events_dead_lettered = Counter(
            "handwerk_ml_events_dead_lettered_total", "Records sent to the DLQ", ["reason"],
            registry=r)
        self.batch_size = Histogram(
            "handwerk_ml_batch_size", "Records per consumer micro-batch",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r)
        self.embed_seconds = Histogram(
            "handwerk_ml_embed_seconds", "Embedding time per micro-batch", buckets=_FAST, registry=r)
        self.texts_embedded = Counter(
            "handwerk_ml_texts_embedded_total", "Texts embedded by the consumer", registry=r)
        self.vectors_reused = Counter(
            "handwerk_ml_vectors_reused_total", "Upserts whose text was unchanged (no embedding)",
            registry=r)
        # The stages of write -> searchable, in order (their sum is about the freshness below;
        # what is left of a client's round trip is HTTP and the wake of ``wait_indexed``).
        self.event_to_broker = Histogram(
            "handwerk_ml_event_to_broker_seconds", "Event time (the write's transaction) to the "
            "Kafka record timestamp (the relay's send), per consumed record",
            buckets=_STAGE, registry=r)
        self.broker_to_fetch = Histogram(
            "handwerk_ml_broker_to_fetch_seconds", "Kafka record timestamp to the consumer's "
            "fetch returning the record (producer linger, acks, the fetch's wait), per record",
            buckets=_STAGE, registry=r)
        self.batch_gather = Histogram(
            "handwerk_ml_batch_gather_seconds", "First records of a micro-batch fetched to the "
            "batch closed (the wait to fill it)", buckets=_STAGE, registry=r)
        self.batch_apply = Histogram(
            "handwerk_ml_batch_apply_seconds", "Micro-batch closed to its index write done "
            "(decode, version guard, embedding, conditional write), applied batches only",
            buckets=_STAGE, registry=r)
        self.offset_commit = Histogram(
            "handwerk_ml_offset_commit_seconds", "One offset commit after an applied "
            "micro-batch (successful commits)", buckets=_STAGE, registry=r)
        self.freshness = Histogram(
            "handwerk_ml_write_to_searchable_seconds",
            "Event time to searchable (visible to searches; the flush follows)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=r)
        self.index_write_seconds = Histogram(
            "handwerk_ml_index_write_seconds", "One conditional index write (upserts and "
            "tombstones of a micro-batch), successful writes only", buckets=_FAST, registry=r)
        self.index_write_failures = Counter(
            "handwerk_ml_index_write_failures_total", "Index writes that failed and were retried",
            registry=r)
        self.dependency_failures = Counter(
            "handwerk_ml_dependency_failures_total", "Transient failures the consumer waited out, "
            "by dependency (index, embedder, broker, unknown)", ["dependency"], registry=r)
        self.reconcile_reemitted = Counter(
            "handwerk_ml_reconcile_reemitted_total", "Events reconcile re-emitted to repair drift",
            registry=r)
        self.index_generation_switches = Counter(
            "handwerk_ml_index_generation_switches_total", "Handovers to another index generation "
            "(reindex, backfill, model switch, compaction, rollback)", registry=r)
        self.task_restarts = Counter(
            "handwerk_ml_task_restarts_total", "Background tasks restarted after a crash", ["task"],
            registry=r)
        self.index_drift = Gauge(
            "handwerk_ml_index_drift", "Projects whose index state differs from the database "
            "(last reconcile)", registry=r)
        # Consumer-group lag as the broker sees it (handwerk/operations/lag.py): read by every
        # process with broker access, so it stays visible while the consumer is down.
        group_labels = ["group", "topic", "partition"]
        self.consumer_group_lag = Gauge(
            "handwerk_ml_consumer_group_lag", "High watermark minus the group's committed offset "
            "(no commit: minus the log start)", group_labels, registry=r)
        self.consumer_group_committed_offset = Gauge(
            "handwerk_ml_consumer_group_committed_offset", "The group's committed offset (next "
            "record to apply); absent while the group never committed on the partition",
            group_labels, registry=r)
        self.topic_high_watermark = Gauge(
            "handwerk_ml_topic_high_watermark", "Offset the next record of the partition gets",
            ["topic", "partition"], registry=r)
        self.oldest_unapplied_event_age = Gauge(
            "handwerk_ml_oldest_unapplied_event_age_seconds", "Age (Kafka timestamp) of the "
            "record at the committed offset, at the last read; 0 when the lag is 0",
            group_labels, registry=r)
        self.lag_monitor_last_success = SettableGauge(
            "handwerk_ml_lag_monitor_last_success_timestamp_seconds", "Unix time of the lag "
            "monitor's last complete read of the broker (0: none yet); only where a lag monitor "
            "runs", registry=r)
        self.data_dir_free_bytes = FreeBytesGauge(
            "handwerk_ml_data_dir_free_bytes", "Bytes still available (to an unprivileged "
            "writer) on the filesystem of the data folder, read at scrape time; at 0 writes "
            "answer 507", registry=r)
        self.vector_cache_bytes = FileBytesGauge(
            "handwerk_ml_vector_cache_bytes", "Bytes on disk of the vector cache (file, WAL and "
            "shared memory), read at scrape time; bounded by HANDWERK_VECTOR_CACHE_MAX_BYTES "
            "(the file) plus its WAL", registry=r)


class SettableGauge(Collector):
    """A gauge without labels that has no sample until it is first set, so that a process
    which never measures it (the API has no lag monitor) exports no series instead of a
    misleading 0. Its family (name, type, help) is always listed."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._value: float | None = None
        self._lock = threading.Lock()
        registry.register(self)

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def get(self) -> float | None:
        with self._lock:
            return self._value

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        value = self.get()
        if value is not None:
            family.add_metric([], value)
        yield family


class _PathGauge(Collector):
    """A gauge read from a path at every scrape. No sample until a path is bound, nor while
    ``_value`` has none: never a misleading 0."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._path: Path | None = None
        registry.register(self)

    def bind(self, path: Path) -> None:
        self._path = path

    def _value(self, path: Path) -> float | None:
        raise NotImplementedError

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        value = None if self._path is None else self._value(self._path)
        if value is not None:
            family.add_metric([], value)
        yield family


class FreeBytesGauge(_PathGauge):
    """The free bytes of the filesystem that holds a folder (statvfs), none while it cannot be
    read."""

    def _value(self, path: Path) -> float | None:
        return free_bytes(path)


class FileBytesGauge(_PathGauge):
    """The bytes on disk of a SQLite file with its WAL and shared-memory files (0 while none
    exists: nothing is on disk)."""

    def _value(self, path: Path) -> float | None:
        return file_bytes(path)


class MetricsServer:
    """Serves a registry at ``http://host:port/metrics`` from a daemon thread (prometheus
    client's WSGI server). ``port=0`` picks a free port (see ``port``). ``stop`` is idempotent."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics server not started")
        return int(self._server.server_port)

    def start(self) -> None:
        if self._server is not None:
            return
        self._server, self._thread = start_http_server(self._port, addr=self._host,
                                                       registry=self._registry)
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5)
