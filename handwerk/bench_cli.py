"""`handwerk bench`: the benchmark of the whole service (see handwerk/benchmark.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer, console: Console) -> None:
    @app.command()
    def bench(
        projects: Annotated[int, typer.Option(
            min=1, help="Projects to ingest through the REST API.")] = 10_000,
        concurrency: Annotated[int, typer.Option(min=1, help="Concurrent writers during ingest.")] = 8,
        probe_interval_s: Annotated[float, typer.Option(
            min=0, help="Pause between find-similar probes during ingest.")] = 0.02,
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
        exact_limit: Annotated[int, typer.Option(
            min=1, help="Embed all project texts in-process (raw rate and exact search) up to "
            "this many projects; above it only a sample, and no recall.")] = 20_000,
        raw_sample: Annotated[int, typer.Option(min=1, help="Sample size above --exact-limit.")] = 2_000,
        ingest_timeout_s: Annotated[float, typer.Option(min=1, help="Give up when ingest takes "
                                                        "longer.")] = 3_600.0,
        restart: Annotated[bool, typer.Option(help="Also restart the server (HNSW built before "
                                              "readiness) and search again.")] = False,
        seed: Annotated[int, typer.Option(help="Seed of projects and queries.")] = 11,
        json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON document "
                                                       "here too.")] = None,
        fail_on_missed: Annotated[bool, typer.Option(help="Exit 1 if a target was missed.")] = False,
    ) -> None:
        """Start a `handwerk serve` on a temporary data folder (own local broker) and measure
        ingest, search, listing, freshness, memory and search quality over HTTP against the
        targets; prints a table (and writes a JSON document with --json)."""
        from handwerk.benchmark import BenchConfig, BenchError, render, run_benchmark

        config = BenchConfig(
            projects=projects, concurrency=concurrency, probe_interval_s=probe_interval_s,
            single_searches=searches, batches=batches, list_requests=list_requests,
            throughput_clients=clients, throughput_seconds=throughput_s, writes=writes,
            write_rate=write_rate, quality_queries=quality_queries, exact_limit=exact_limit,
            raw_sample=raw_sample, ingest_timeout_s=ingest_timeout_s, restart=restart, seed=seed)
        try:
            document = run_benchmark(config, log=lambda line: console.print(line, markup=False,
                                                                             highlight=False))
        except BenchError as e:
            console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
            raise typer.Exit(1) from e
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        console.print(render(document))
        note = document["results"].get("quality", {}).get("recall_note")
        if note:
            console.print(f"recall: {note}")
        if json_path is not None:
            console.print(f"JSON: {json_path}")
        if fail_on_missed and document["tally"]["missed"]:
            raise typer.Exit(1)
