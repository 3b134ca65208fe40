"""`handwerk bench`: the benchmark of the whole service (see tooling/benchmark/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_VECTOR_STORE = Path.home() / ".cache" / "handwerk" / "bench"


def register(app: typer.Typer, console: Console) -> None:
    @app.command()
    def bench(
        projects: Annotated[int, typer.Option(
            min=1, help="Projects to ingest through the REST API.")] = 10_000,
        concurrency: Annotated[int, typer.Option(min=1, help="Concurrent writers during ingest.")] = 8,
        search_load_rate: Annotated[float, typer.Option(
            min=0.1, help="find-similar per second (open loop) during the second half of the "
            "measured ingest and during the reindex; the first half runs without "
            "searches.")] = 10.0,
        searches: Annotated[int, typer.Option(
            min=1, help="find-similar requests with 1 client after ingest.")] = 500,
        batches: Annotated[int, typer.Option(min=1, help="batch-similar requests (5 queries each).")] = 100,
        list_requests: Annotated[int, typer.Option(
            min=1, help="List requests per page kind (first page, deep offset).")] = 100,
        clients: Annotated[int, typer.Option(min=1, help="Concurrent clients of the throughput "
                                             "phase.")] = 8,
        throughput_s: Annotated[float, typer.Option(min=0.1, help="Duration of the throughput "
                                                   "phase.")] = 15.0,
        writes: Annotated[int, typer.Option(min=1, help="Writes of the write -> searchable phase.")] = 200,
        write_rate: Annotated[float, typer.Option(min=0.1, help="Writes per second in that phase.")] = 20.0,
        quality_queries: Annotated[int, typer.Option(min=50, help="Queries of the recall@10 and "
                                                     "old-design baseline phase.")] = 100,
        measured_ingest: Annotated[int, typer.Option(
            min=1, help="Projects the pipeline embeds during ingest (its rate is measured on "
            "them); the rest load with vectors reused from the bench's own pass.")] = 10_000,
        raw_sample: Annotated[int, typer.Option(
            min=1, help="Texts of the raw embedder rate (from the measured projects).")] = 2_000,
        hnsw_wait_s: Annotated[float, typer.Option(
            min=0, help="Wait at most this long after ingest for compaction to put the points "
            "into the HNSW graph.")] = 900.0,
        vector_store: Annotated[Path | None, typer.Option(
            help="Folder that keeps the vectors of all texts between runs (same texts and "
            "model: not embedded again).")] = _VECTOR_STORE,
        no_vector_store: Annotated[bool, typer.Option(
            "--no-vector-store", help="Embed all texts in this run and keep nothing.")] = False,
        prepare_only: Annotated[bool, typer.Option(
            help="Only embed all texts into --vector-store, then stop.")] = False,
        ingest_timeout_s: Annotated[float, typer.Option(min=1, help="Give up when ingest takes "
                                                        "longer.")] = 3_600.0,
        restart: Annotated[bool, typer.Option(help="Also restart the server (HNSW built before "
                                              "readiness) and search again.")] = False,
        reindex: Annotated[bool, typer.Option(help="Also run a reindex from the topic without "
                                              "vector reuse (every text embedded again by the "
                                              "builder) under the light search load.")] = True,
        seed: Annotated[int, typer.Option(help="Seed of projects and queries.")] = 11,
        json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON document "
                                                       "here too.")] = None,
        fail_on_missed: Annotated[bool, typer.Option(help="Exit 1 if a target was missed.")] = False,
    ) -> None:
        """Start a `handwerk serve` on a temporary data folder (own local broker) and measure
        ingest, search, listing, freshness, memory and search quality over HTTP against the
        targets; prints a table (and writes a JSON document with --json)."""
        from handwerk.cli.checkout import NotACheckout, import_tooling

        try:
            tooling = import_tooling("benchmark")
        except NotACheckout as e:
            console.print(str(e))
            raise typer.Exit(2) from e
        BenchConfig, BenchError, render, run_benchmark = (  # noqa: N806
            tooling.BenchConfig, tooling.BenchError, tooling.render, tooling.run_benchmark)

        config = BenchConfig(
            projects=projects, concurrency=concurrency, search_load_rate=search_load_rate,
            single_searches=searches, batches=batches, list_requests=list_requests,
            throughput_clients=clients, throughput_seconds=throughput_s, writes=writes,
            write_rate=write_rate, quality_queries=quality_queries,
            measured_ingest=measured_ingest, raw_sample=raw_sample,
            ingest_timeout_s=ingest_timeout_s, hnsw_wait_s=hnsw_wait_s,
            vector_store=None if no_vector_store or vector_store is None else str(vector_store),
            prepare_only=prepare_only, restart=restart, reindex=reindex, seed=seed)
        try:
            document = run_benchmark(config, log=lambda line: console.print(line, markup=False,
                                                                             highlight=False))
        except BenchError as e:
            console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
            raise typer.Exit(1) from e
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        if prepare_only:
            console.print(f"prepared: {document['prepared']}")
            return
        console.print(render(document))
        if json_path is not None:
            console.print(f"JSON: {json_path}")
        if fail_on_missed and document["tally"]["missed"]:
            raise typer.Exit(1)
