"""A whole run: the vectors, the raw embedder rate, a server on a temporary data folder and the
phases against it, in the order the package docstring gives; the results document."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig, BenchError, Log
from tooling.benchmark.freshness import write_to_searchable
from tooling.benchmark.generations import compaction, reindex_without_reuse
from tooling.benchmark.ingest import ingest_all, until_in_graph
from tooling.benchmark.listing import list_pages
from tooling.benchmark.machine import machine_info
from tooling.benchmark.memory import serve_memory
from tooling.benchmark.quality import compare_with_exact
from tooling.benchmark.queries import QueryGenerator
from tooling.benchmark.search import one_client, throughput
from tooling.benchmark.server import Server
from tooling.benchmark.stats import latency_summary, ratio
from tooling.benchmark.targets import evaluate, tally
from tooling.benchmark.vectors import all_vectors, embed_texts, load_embedder, preload_vector_cache
from tooling.demo import demo_projects


def run_benchmark(config: BenchConfig, log: Log = print) -> dict[str, Any]:
    """Run every phase; returns the JSON document (machine, config, results, rows, tally)."""
    from handwerk.contract.text import project_text

    machine = machine_info()
    projects = demo_projects(config.projects, seed=config.seed)
    texts = [project_text(p) for p in projects]
    log(f"loading the embedder; {len(texts):,} project texts")
    embedder, settings = load_embedder(threads=os.cpu_count() or 1)  # the raw rate: every core
    store = None if config.vector_store is None else Path(config.vector_store)
    matrix, full_pass = all_vectors(embedder, texts, settings.embedding.batch_size, store, log)
    document: dict[str, Any] = {"benchmark": "handwerk bench", "machine": machine,
                                "config": asdict(config)}
    if config.prepare_only:
        embedder.close()
        return document | {"prepared": full_pass, "results": {}, "rows": [], "tally": tally([])}
    measured = min(config.measured_ingest, len(texts))
    sample, raw_rate = _raw_embed_rate(embedder, settings, texts[:measured], config, log)
    queries = QueryGenerator(config.seed)
    run = _Run(config, log, embedder, settings, projects, texts, matrix, measured, raw_rate, queries,
               quality_queries=queries.take(config.quality_queries),  # fixed for a seed, never reused
               results={"vectors": full_pass})
    run.on_a_server()
    results = run.results
    results["machine_after"] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    rows = evaluate(results)
    return document | {
        "embedder": {"model": embedder.model_name, "backend": embedder.spec.backend,
                     "threads": settings.embedding.threads, "raw_rate_threads": os.cpu_count(),
                     "query_threads": settings.embedding.query_threads,
                     "batch_size": settings.embedding.batch_size,
                     "raw_rate_sample": sample, "measured_ingest": measured},
        "results": results, "rows": rows, "tally": tally(rows)}


def _raw_embed_rate(embedder: Any, settings: Any, measured_texts: list[str], config: BenchConfig,
                    log: Log) -> tuple[int, float | None]:
    """Texts per second of the embedder in this process, timed on a sample of the texts the
    pipeline will embed, before the server starts (nothing competes); and the sample's size."""
    measured = len(measured_texts)
    sample = random.Random(config.seed).sample(measured_texts, min(config.raw_sample, measured))
    log(f"raw embedder rate: embedding {len(sample):,} of the texts the pipeline will embed, "
        f"in this process (threads={os.cpu_count()}, "
        f"batch={settings.embedding.batch_size})")
    _, seconds = embed_texts(embedder, sample, settings.embedding.batch_size)
    raw_rate = len(sample) / seconds if seconds > 0 else None
    log(f"  {raw_rate or 0:.1f} texts/s")
    return len(sample), raw_rate


@dataclass
class _Run:
    """What the phases on a server need once the vectors are ready; each phase adds its part
    to ``results``."""

    config: BenchConfig
    log: Log
    embedder: Any
    settings: Any
    projects: list[dict[str, Any]]
    texts: list[str]
    matrix: np.ndarray
    measured: int
    raw_rate: float | None
    queries: QueryGenerator
    quality_queries: list[str]
    results: dict[str, Any]

    def on_a_server(self) -> None:
        """Start `handwerk serve` on a temporary data folder, run the phases, stop it (and close
        the embedder)."""
        log = self.log
        with tempfile.TemporaryDirectory(prefix="handwerk-bench-") as folder:
            cache = self.settings.embedding.model_cache_dir or Path.home() / ".cache" / "handwerk" / "models"
            server = Server(Path(folder) / "data", Path(folder) / "serve.log", cache)
            if self.measured < len(self.texts):
                log(f"preloading the service's vector cache with the vectors of the other "
                    f"{len(self.texts) - self.measured:,} projects")
                preload_vector_cache(server.data, self.embedder, self.texts[self.measured:],
                                     self.matrix[self.measured:])
            log("starting handwerk serve")
            ready = server.start()
            log(f"  ready in {ready:.1f} s on {server.url} (pid {server.pid})")
            try:
                asyncio.run(self.phases(server))
                self.results["server_startup_s"] = round(ready, 1)
                if self.config.restart:
                    self.results["restart"] = self.restart(server)
            except Exception as e:
                raise BenchError(f"{type(e).__name__}: {e}\nlast lines of the server log:\n"
                                 f"{server.tail()}") from e
            finally:
                server.stop()
                self.embedder.close()

    async def phases(self, server: Server) -> None:
        """Ingest, the HNSW wait, quality, one client, throughput, freshness; then the index."""
        import httpx

        config, log, results = self.config, self.log, self.results
        limits = httpx.Limits(max_connections=max(config.concurrency, config.throughput_clients) + 4)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            client = Client(http)
            log(f"ingest: {self.measured:,} projects embedded by the pipeline, "
                f"{len(self.projects) - self.measured:,} with reused vectors; {config.concurrency} "
                "writers, find-similar probe meanwhile")
            part, ids = await ingest_all(client, self.projects, self.queries, config, self.raw_rate)
            results.update(part)
            log(f"  {part['ingest']['pipeline_rate_per_s']}/s until all searchable"
                + (f"; bulk {part['bulk_load']['rate_per_s']}/s" if "bulk_load" in part else ""))
            log("waiting until compaction has the points in the HNSW graph")
            results["hnsw_wait"] = await until_in_graph(
                client, self.settings.generations.compaction_unindexed_points - 1, config.hnsw_wait_s)
            log(f"  {results['hnsw_wait']}")
            log(f"quality: {len(self.quality_queries)} queries vs exact search over "
                f"{self.matrix.shape[0]:,} vectors")
            results["quality"] = await compare_with_exact(client, self.embedder, self.matrix, ids,
                                                          self.quality_queries)
            log(f"1 client: {config.single_searches} find-similar, {config.batches} "
                f"batch-similar, {config.list_requests}x2 list")
            found = await one_client(client, self.queries, config)
            listed = await list_pages(client, config, rng=random.Random(config.seed))
            results.update({"single": found["single"], "batch5": found["batch5"],
                            "estimate": found["estimate"], **listed,
                            "stages": found["stages"]})  # the document's order
            log(f"throughput: {config.throughput_clients} clients for "
                f"{config.throughput_seconds:.0f} s")
            results.update(await throughput(client, self.queries, config))
            log(f"freshness: {config.writes} writes at {config.write_rate:g}/s")
            results.update(await write_to_searchable(client, config))
            _, response = await client.request("GET", "/api/v1/similarity/stats")
            results["index"] = response.json()
            results["memory"] = serve_memory(server)  # every project written since the start
            log("compaction: find-similar (1 client) on the quiet index, then during it")
            results["compaction"] = await compaction(client, self.queries, config, server)
            log(f"  {results['compaction']['seconds']} s; p50 during / quiet "
                f"{results['compaction']['p50_vs_quiet']}")
            if config.reindex:
                log(f"reindex from the topic without vector reuse, "
                    f"{config.search_load_rate:g} find-similar/s meanwhile")
                results["reindex"] = await reindex_without_reuse(
                    client, self.queries, config, self.raw_rate, server)
                log(f"  {results['reindex']['texts_per_s']} texts/s "
                    f"({results['reindex']['vs_raw']} of the raw rate)")

    def restart(self, server: Server) -> dict[str, Any]:
        """Restart the server (HNSW built before readiness), then find-similar again."""
        import httpx

        server.stop()
        self.log("restart (HNSW built before readiness), then find-similar again")
        restart: dict[str, Any] = {"ready_s": round(server.start(), 1)}
        before = self.results.get("memory", {}).get("serve_rss_mib")
        single = self.results.get("single", {}).get("p50_ms")

        async def again() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                client = Client(http)
                for _ in range(10):
                    await client.find(next(self.queries))
                restart["single"] = latency_summary(
                    [(await client.find(next(self.queries)))[0]
                     for _ in range(self.config.single_searches)])
                _, response = await client.request("GET", "/api/v1/similarity/stats")
                restart["index"] = response.json()

        asyncio.run(again())
        restart["memory"] = serve_memory(server)
        after = restart["memory"]["serve_rss_mib"]
        # before the restart: the graph as compaction keeps it (some points outside), RSS of a
        # process that wrote everything since its start; after: every point in the graph
        restart["single_p50_before_vs_after"] = ratio(single, restart["single"]["p50_ms"])
        restart["serve_rss_before_vs_after"] = ratio(before, after)
        return restart
