"""Prometheus metrics, on a registry owned by whoever builds the process (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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
        self.outbox_backlog = Gauge(
            "handwerk_ml_outbox_backlog", "Outbox rows not yet acknowledged by the broker",
            registry=r)
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
        self.freshness = Histogram(
            "handwerk_ml_write_to_searchable_seconds", "Event time to index write",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=r)
        self.index_write_failures = Counter(
            "handwerk_ml_index_write_failures_total", "Index writes that failed and were retried",
            registry=r)
        self.dependency_failures = Counter(
            "handwerk_ml_dependency_failures_total", "Transient failures the consumer waited out, "
            "by dependency (index, embedder, broker, unknown)", ["dependency"], registry=r)
        self.reconcile_reemitted = Counter(
            "handwerk_ml_reconcile_reemitted_total", "Events reconcile re-emitted to repair drift",
            registry=r)
        self.task_restarts = Counter(
            "handwerk_ml_task_restarts_total", "Background tasks restarted after a crash", ["task"],
            registry=r)
        self.index_drift = Gauge(
            "handwerk_ml_index_drift", "Projects whose index state differs from the database "
            "(last reconcile)", registry=r)
