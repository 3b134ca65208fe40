"""Builds, starts and stops everything one process runs; the only place clients are created.

Roles decide what runs here: the API (search + writes), the relay, the consumer. On the
embedded index the process that serves search must also be the one that consumes (one
process per shard), and it holds the data-folder lock before opening anything.

Observability rides along: the lag monitor runs wherever the broker is at hand (serve,
consume and relay, so the lag stays visible while the consumer is down), the outbox gauges
wherever the database is written (serve, api, relay), and every process serves its registry
on ``metrics_host:metrics_port`` when that port is set (serve and api also on their HTTP port,
where API keys may protect it; the separate port needs none, so bind it where only the
scraper reaches it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from handwerk import __version__
from handwerk.consumer.applier import IndexApplier
from handwerk.consumer.journal import ApplyJournal
from handwerk.consumer.worker import IndexerState, IndexingConsumer
from handwerk.embedding.embedder import Embedder
from handwerk.embedding.loading import load_embedder
from handwerk.embedding.vector_cache import VectorCache
from handwerk.generations.manager import ReindexManager
from handwerk.index import VectorIndex
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import GenerationCatalog, GenerationMeta
from handwerk.index.factory import IndexFactory
from handwerk.index.watch import IndexedVersions
from handwerk.metrics import Metrics, MetricsServer
from handwerk.operations.lag import LagMonitor
from handwerk.operations.log_loss import LogLoss
from handwerk.operations.outbox_gauges import watch_outbox
from handwerk.operations.reconcile import DriftReport
from handwerk.operations.reconcile_loop import Reconciler
from handwerk.outbox.backlog import outbox_backlog
from handwerk.outbox.database import create_engine, run_migrations, session_factory
from handwerk.outbox.store import OutboxSignal, ProjectStore
from handwerk.process.crash_points import CrashPoints
from handwerk.process.datadir import DataDirLock
from handwerk.process.storage import StorageWatch
from handwerk.process.supervision import Supervisor
from handwerk.producer.lease import RelayLeaseKeeper
from handwerk.producer.relay import Relay
from handwerk.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Roles:
    api: bool = True
    relay: bool = True
    consumer: bool = True
    reconcile_on_start: bool = True
    consumers: int = 1
    open_index: bool = False
    restart_crashed: bool = True  # serve: restart with backoff; headless roles: exit non-zero

    @property
    def name(self) -> str:
        """The command this mix of roles is: serve, api, relay, consume (or tool)."""
        if self.api:
            return "serve" if self.consumer else "api"
        if self.relay != self.consumer:
            return "relay" if self.relay else "consume"
        return "relay+consume" if self.relay else "tool"

    @property
    def watches_lag(self) -> bool:
        """Broker at hand: the relay too, so lag stays visible while the consumer is down."""
        return self.relay or self.consumer

    @property
    def watches_outbox(self) -> bool:
        return self.api or self.relay


class Runtime:
    """States: created → started → stopped. ``stop`` is idempotent and runs in reverse."""

    def __init__(self, settings: Settings, roles: Roles, *, lock: DataDirLock | None = None) -> None:
        self.settings = settings
        self.roles = roles
        self.metrics = Metrics()
        self.metrics.process_info.labels(roles.name, __version__).set(1)
        self.signal = OutboxSignal()
        self.indexed_versions = IndexedVersions()
        self.crash_points = CrashPoints(settings.crash_point)
        self.storage = StorageWatch(settings.data_dir)
        self.metrics.data_dir_free_bytes.bind(settings.data_dir)
        self.metrics.vector_cache_bytes.bind(settings.vector_cache_path)
        self.engine: Any = None
        self.store: ProjectStore | None = None
        self.embedder: Embedder | None = None
        self.index: ActiveIndex | None = None
        self.indexes = IndexFactory(settings)  # index and catalogs share one Qdrant connection
        self.reindex: ReindexManager | None = None
        self._vector_cache: VectorCache | None = None
        self.relay: Relay | None = None
        self.consumers: list[IndexingConsumer] = []
        self.lag_monitor: LagMonitor | None = None
        self.metrics_server: MetricsServer | None = None
        self.log_loss = LogLoss()  # reported by relay, consumers, lag monitor; read by reconcile
        self.reconciler: Reconciler | None = None
        self._lock = lock
        self._owns_lock = lock is None
        self._journal: ApplyJournal | None = None
        self._stop = asyncio.Event()
        self.supervisor = Supervisor(self._stop, self.metrics, restart=roles.restart_crashed)
        self._started = False

    @property
    def manages_generations(self) -> bool:
        """Where search runs: with the consumer in this process, or against a Qdrant server
        whose consumers (elsewhere) follow the alias."""
        return self.roles.api and (self.roles.consumer or self.settings.index.backend == "qdrant")

    @property
    def needs_index(self) -> bool:
        return self.roles.api or self.roles.consumer or self.roles.open_index

    @property
    def failed(self) -> list[str]:
        """Tasks that crashed for good (headless roles): the process should exit."""
        return [s.name for s in self.supervisor.status.values() if s.state == "crashed"]

    @property
    def crashed(self) -> asyncio.Event:
        return self.supervisor.crashed

    async def start(self) -> None:
        s = self.settings
        if self.needs_index and s.index.backend == "edge" and self._lock is None:
            self._lock = DataDirLock(s.data_dir)
            self._lock.acquire()
        self._started = True
        seen = s.observability
        if seen.metrics_port is not None:  # serve/api: also on their HTTP port (behind API keys)
            self.metrics_server = MetricsServer(self.metrics.registry, seen.metrics_host, seen.metrics_port)
            self.metrics_server.start()
        self.engine = create_engine(s.resolved_database_url)
        await run_migrations(self.engine)
        sessions = session_factory(self.engine)
        self.store = ProjectStore(sessions, self.signal, crash_points=self.crash_points,
                                  storage=self.storage)
        if self.needs_index:
            await self._open_index()
            self.reconciler = Reconciler(s, self.store, self.require_index, self.metrics,
                                         self.log_loss, quiet=self._pipeline_quiet)
        if self.roles.consumer and self.roles.reconcile_on_start and s.reconcile.on_start:
            await self.reconcile(repair_drift=True)
        if self.roles.watches_outbox:
            self.supervisor.spawn("outbox-gauges", lambda: watch_outbox(
                sessions, self.metrics, self._stop, s.observability.lag_interval_s))
        if self.roles.watches_lag:
            monitor = self.lag_monitor = LagMonitor(s, self.metrics, on_read=self.log_loss.observe)
            self.supervisor.spawn("lag-monitor", lambda: monitor.run(self._stop))
        if self.roles.relay:
            relay = self.relay = Relay(s, sessions, self.metrics, self.signal,
                                       crash_points=self.crash_points, storage=self.storage,
                                       on_topic_created=self.log_loss.report)
            self.supervisor.spawn("relay", lambda: relay.run(self._stop))
        if self.manages_generations:
            # Generations are managed where search runs. With consumers in other processes
            # (Qdrant server) they follow the alias; only a model switch needs them here. API
            # replicas on one Qdrant server: the lease holder manages, the others follow.
            lease = RelayLeaseKeeper(sessions, f"{os.getpid()}-{uuid.uuid4().hex[:8]}",
                                     s.generations.lease_ttl_s, name="generations") \
                if s.index.backend == "qdrant" else None
            manager = self.reindex = ReindexManager(
                s, self.indexes.catalog(), self.require_index(), self.store, self.metrics,
                lambda model: load_embedder(s, model), model_switch=self.roles.consumer,
                lease=lease)
            await manager.take_charge()
            self.supervisor.spawn("index-upkeep", lambda: manager.run_upkeep(self._stop))
        if self.roles.consumer:
            index = self.require_index()
            self._journal = ApplyJournal(s.consumer.apply_journal) if s.consumer.apply_journal else None
            self._vector_cache = VectorCache(s.vector_cache_path,
                                             max_bytes=s.embedding.vector_cache_max_bytes)
            applier = IndexApplier(index, self.require_embedder(), self.metrics, self._journal,
                                   self.indexed_versions, cache=self._vector_cache)
            if s.reconcile.interval_s > 0:  # also reacts to a lost log at once
                reconciler = self.require_reconciler()
                self.supervisor.spawn(
                    "reconcile", lambda: reconciler.run(self._stop, s.reconcile.interval_s))
            for n in range(self.roles.consumers):
                consumer = IndexingConsumer(s, applier, self.metrics,
                                            client_id=f"handwerk-consumer-{n}",
                                            crash_points=self.crash_points,
                                            on_log_restart=self.log_loss.report)
                self.consumers.append(consumer)
                self.supervisor.spawn(f"consumer-{n}", partial(consumer.run, self._stop))

    async def _open_index(self) -> None:
        """The generation the alias names, with the embedder of the model that built it (a
        model switch outlives restarts); the configured model builds the first generation."""
        s = self.settings
        catalog = self.indexes.catalog()
        current = await catalog.current()
        meta = catalog.folder.read_meta(current) if current is not None else None
        configured = str(s.embedding.model_path) if s.embedding.model_path is not None else None
        self.embedder = await asyncio.to_thread(
            load_embedder, s, meta.model if meta is not None else configured)
        if meta is not None and configured is not None and meta.model != self.embedder.model_name:
            log.warning("generation %s was built with %s; serving with it (reindex --model to "
                        "change)", current, meta.model)
        index: VectorIndex = self.indexes.vector_index(model=self.embedder.model_name,
                                                       dimension=self.embedder.dimension)
        await index.open()  # through the alias (creating generation 1 on the first start)
        generation = str(getattr(index, "generation", "") or current or "g0001")
        manages = self.manages_generations
        if s.index.backend == "qdrant" and manages:
            # Where generations are managed, the live target is bound to its own collection,
            # never to the alias: a handover writes the new one while this one stays put.
            await index.close()
            index = catalog.index(generation, model=self.embedder.model_name,
                                  dimension=self.embedder.dimension)
            await index.open()
        meta = self._check_weights(catalog, generation, created=current is None)
        self.index = ActiveIndex(IndexTarget(generation, index, self.embedder, meta))
        if s.index.backend == "qdrant" and not manages:
            self.index.follow_alias(catalog)
        elif s.index.backend == "qdrant" and self.roles.consumer:
            self.index.guard_alias(catalog)  # another replica may move the alias
        # optimize() holds the GIL for its whole run: only before this process serves.
        built = await asyncio.to_thread(self.index.optimize)
        log.info("index ready (generation %s, optimized=%s)", generation, built)

    def _check_weights(self, catalog: GenerationCatalog, generation: str, *,
                       created: bool) -> GenerationMeta | None:
        """The live generation's metadata, with the content key of the weights that made its
        vectors: recorded here for the first generation, which this start has just created
        with this embedder. An older generation without one keeps none (which weights built
        it is unknown: its first rebuild reuses nothing and runs the model gate). One whose
        weights are no longer what the model's files hold is served on (those weights are
        gone), loudly: queries and new writes now embed with other weights than its vectors."""
        embedder = self.require_embedder()
        meta = catalog.folder.read_meta(generation)
        if meta is None:
            return None
        if meta.content_key is None and created:
            meta = meta.with_(content_key=embedder.content_key)
            catalog.folder.write_meta(meta)
        elif meta.content_key is None:
            log.info("generation %s records no content key of its model's weights (built before "
                     "they were recorded): its next rebuild re-embeds every text once",
                     generation)
        elif meta.content_key != embedder.content_key:
            log.error("generation %s was built with weights %s of %s, but its files now hold %s: "
                      "searches do not match its vectors until a rebuild (`handwerk reindex "
                      "--model %s`, with --force if the quality gate refuses it)",
                      generation, meta.content_key, meta.model, embedder.content_key, meta.model)
        return meta

    def require_index(self) -> ActiveIndex:
        if self.index is None:
            raise RuntimeError("this process does not open the vector index")
        return self.index

    def require_store(self) -> ProjectStore:
        if self.store is None:
            raise RuntimeError("runtime not started")
        return self.store

    def consumer_lag(self) -> dict[str, int] | None:
        if not self.consumers:
            return None
        lag: dict[str, int] = {}
        for consumer in self.consumers:
            lag.update({str(p): n for p, n in consumer.lag.items()})
        return dict(sorted(lag.items(), key=lambda kv: int(kv[0])))

    def indexer_state(self) -> str | None:
        """joining / catching_up / live / stalled / stopped; None where nothing consumes."""
        if not self.consumers:
            return None
        states = {c.state for c in self.consumers}
        for state in (IndexerState.STALLED, IndexerState.CATCHING_UP, IndexerState.LIVE,
                      IndexerState.JOINING):
            if state in states:
                return state.value
        return IndexerState.STOPPED.value

    async def readiness(self) -> dict[str, bool]:
        """What searches and writes need: the database and the index. The indexer's group
        membership is not among them (after a crash the group takes a session timeout to
        rebalance; search and writes need not wait), but an indexer stalled on a dependency
        past the threshold, or a role that is down, is. A full disk is not either: reads and
        searches are still served and writes answer 507 (``components.storage`` says why);
        taking the process out of rotation would stop the very writes that show the space
        is back."""
        checks: dict[str, bool] = {"database": False}
        try:
            await self.require_store().ping()
            checks["database"] = True
        except Exception:
            log.warning("readiness: database check failed", exc_info=True)
        if self.index is not None:
            try:
                await self.index.get_states([])
                checks["index"] = True
            except Exception:
                checks["index"] = False
        if self.consumers:
            checks["index_writes"] = not any(c.stalled_too_long for c in self.consumers)
        checks["background_tasks"] = not self.supervisor.down
        return checks

    def components(self) -> dict[str, Any]:
        """Which part is in which state, for /readyz and stats (informational)."""
        out: dict[str, Any] = {"tasks": {s.name: s.state for s in self.supervisor.status.values()},
                               "storage": self.storage.component()}
        if self.supervisor.down:
            out["down"] = {name: self.supervisor.status[name].last_error
                           for name in self.supervisor.down}
        if self.consumers:
            out["indexer"] = self.indexer_state()
            failures = [c.last_failure for c in self.consumers if c.last_failure]
            if failures:
                out["indexer_last_failure"] = failures[0]
        if self.relay is not None:
            out["relay_connected"] = self.relay.connected
        return out

    def require_embedder(self) -> Embedder:
        """The embedder of the live generation's model."""
        if self.index is not None:
            return self.index.embedder
        if self.embedder is None:
            raise RuntimeError("this process does not load the embedder")
        return self.embedder

    @property
    def last_drift(self) -> DriftReport | None:
        return self.reconciler.last if self.reconciler is not None else None

    def require_reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise RuntimeError("this process does not open the vector index")
        return self.reconciler

    async def reconcile(self, *, repair_drift: bool) -> DriftReport:
        return await self.require_reconciler().check(repair_drift=repair_drift)

    async def _pipeline_quiet(self) -> bool:
        """Drift seen while events are still queued is mostly lag, not loss: re-emitting then
        would only add load. Repair once the outbox is drained and the consumer caught up."""
        lag = self.consumer_lag() or {}
        return sum(lag.values()) == 0 and await outbox_backlog(self.require_store().sessions) == 0

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._stop.set()
        if self.reindex is not None:
            await self.reindex.close()  # a builder child dies; its generation is removed
        await self.supervisor.stop(grace_s=30)  # tasks end (or are cancelled and awaited) first
        if self._vector_cache is not None:
            self._vector_cache.close()
        if self.lag_monitor is not None:
            await self.lag_monitor.close()
        if self._journal is not None:
            self._journal.close()
        if self.index is not None:
            await self.index.close()
        if self.index is not None and self.index.embedder is not self.embedder:
            await self.index.embedder.aclose()
        if self.embedder is not None:
            await self.embedder.aclose()
        if self.engine is not None:
            await self.engine.dispose()
        if self._lock is not None and self._owns_lock:
            self._lock.release()
        if self.metrics_server is not None:
            self.metrics_server.stop()

    async def __aenter__(self) -> Runtime:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
