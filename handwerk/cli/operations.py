"""Operator commands: legacy import, consumer lag, demo data, and the dead-letter topic."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from handwerk.cli.common import DataDir, console, fail, load_settings

app = typer.Typer()
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-lettered records.")


@app.command("import-legacy")
def import_legacy(
        path: Annotated[Path, typer.Argument(help="The older service's SQLite projects file.")],
        data_dir: DataDir = None,
        legacy_model: Annotated[str | None, typer.Option(
            help="Model the older service embedded with (its file does not say); default: "
                 "sentence-transformers/all-MiniLM-L6-v2.")] = None,
        chunk: Annotated[int, typer.Option(min=1, max=10_000, help="Projects per transaction.")] = 200,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        restore_deleted: Annotated[bool, typer.Option(
            "--restore-deleted", help="Re-create projects deleted since an earlier import "
                                      "(default: skip and report them).")] = False,
        ) -> None:
    """Migrate a legacy projects database through the outbox (idempotent: a re-run skips what
    it wrote). Runs next to `handwerk serve` on the same data folder. Exit status 1 if any row
    failed validation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from handwerk.operations.legacy import LEGACY_MODEL, LegacyFormatError, run_legacy_import

    started = time.perf_counter()
    settings = load_settings(data_dir)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("importing", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = asyncio.run(run_legacy_import(settings, path, chunk=chunk, progress=progress,
                                                   legacy_model=legacy_model or LEGACY_MODEL,
                                                   restore_deleted=restore_deleted))
        except LegacyFormatError as e:
            raise fail(str(e)) from e
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        out = Console(highlight=False, soft_wrap=True)
        out.print(f"Legacy import of {report.source}")
        out.print(f"  total projects:       {report.total}")
        out.print(f"  migrated:             {report.migrated}")
        out.print(f"  already present:      {report.already_present}")
        out.print(f"  deleted, skipped:     {report.deleted_skipped}"
                  + (" (--restore-deleted re-creates them)" if report.deleted_skipped else ""))
        _print_ids(out, report.deleted_ids)
        if restore_deleted:
            out.print(f"  deleted, restored:    {report.restored}")
            _print_ids(out, report.restored_ids)
        out.print(f"  failed:               {report.failed}")
        for legacy_id, reason in report.failed_samples:
            out.print(f"    legacy id {legacy_id}: {reason}", markup=False)
        out.print(f"  vectors reused:       {report.vectors_reused}")
        out.print(f"  vectors to compute:   {report.vectors_recomputed}")
        out.print(f"  vector check:         {report.vector_check}", markup=False)
        out.print(f"  total time:           {report.seconds:.2f} s")
        out.print(f"  average per project:  {report.per_project_ms:.2f} ms")
        out.print(f"  command wall time:    {time.perf_counter() - started:.2f} s "
                  "(with database migrations and model load)")
    if report.failed:
        raise typer.Exit(1)


def _print_ids(out: Console, ids: list[str], limit: int = 20) -> None:
    for project_id in ids[:limit]:
        out.print(f"    {project_id}", markup=False)
    if len(ids) > limit:
        out.print(f"    ... and {len(ids) - limit} more (--json lists all)")


@app.command()
def lag(watch: Annotated[bool, typer.Option("--watch", help="Redraw in place until Ctrl-C.")] = False,
        interval: Annotated[float, typer.Option(min=0.1, help="Seconds between reads with "
                                                "--watch.")] = 2.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document "
                                              "(partitions and totals).")] = False,
        ) -> None:
    """Consumer-group lag per partition (committed offset against high watermark), read from
    the broker alone: works while the consumer is down. Needs HANDWERK_KAFKA_BOOTSTRAP_SERVERS."""
    from handwerk.operations.lag import LagMonitor, LagSnapshot, LagUnavailable
    from handwerk.operations.lag_view import lag_table, watch_lag

    settings = load_settings()
    if settings.kafka.bootstrap_servers is None:
        raise fail("HANDWERK_KAFKA_BOOTSTRAP_SERVERS is not set")
    if watch and as_json:
        raise fail("--watch and --json exclude each other")
    out = Console(width=None if sys.stdout.isatty() else 160)  # piped: no 80-column cut

    async def read_once() -> LagSnapshot:
        async with LagMonitor(settings) as monitor:
            return await monitor.read()

    async def watch_until_interrupted() -> None:
        monitor = LagMonitor(settings)  # connects on the first read, reconnects after failures
        try:
            await watch_lag(monitor, out, interval)
        finally:
            await monitor.close()

    try:
        if watch:
            asyncio.run(watch_until_interrupted())
            return
        snapshot = asyncio.run(read_once())
    except KeyboardInterrupt:
        return
    except LagUnavailable as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e
    if as_json:
        print(json.dumps(snapshot.as_dict(), indent=2))
    else:
        out.print(lag_table(snapshot))


@app.command("demo-data")
def demo_data(url: Annotated[str, typer.Option(help="API base URL.")] = "http://127.0.0.1:8000",
              count: Annotated[int, typer.Option(min=1)] = 300,
              concurrency: Annotated[int, typer.Option(min=1, max=64)] = 8,
              seed: int = 7,
              api_key: Annotated[str | None, typer.Option(
                  envvar="HANDWERK_API_KEY", help="A key with the write scope (once keys exist).")] = None,
              ) -> None:
    """Load realistic German and English projects through the REST API."""
    import httpx

    from handwerk.cli.checkout import NotACheckout, import_tooling

    try:
        demo_projects = import_tooling("demo").demo_projects
    except NotACheckout as e:
        raise fail(str(e)) from e

    async def main() -> int:
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        for project in demo_projects(count, seed):
            queue.put_nowait(project)
        created = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
            async def worker() -> None:
                nonlocal created
                while not queue.empty():
                    response = await client.post("/api/v1/projects/", json=queue.get_nowait())
                    response.raise_for_status()
                    created += 1
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return created

    started = time.perf_counter()
    created = asyncio.run(main())
    console.print(f"created {created} projects in {time.perf_counter() - started:.1f}s")


@dlq_app.command("list")
def dlq_list(limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """Print dead-lettered records with their reasons (JSON lines)."""
    from handwerk.operations.dlq import read_dead_letters

    settings = load_settings()
    for letter in asyncio.run(read_dead_letters(settings, limit=limit)):
        print(json.dumps(letter, ensure_ascii=False))


@dlq_app.command("replay")
def dlq_replay(limit: Annotated[int, typer.Option(min=1)] = 1000) -> None:
    """Re-publish dead-lettered records to the main topic (after a fix)."""
    from handwerk.operations.dlq import replay_dead_letters

    settings = load_settings()
    replayed = asyncio.run(replay_dead_letters(settings, limit=limit))
    console.print(f"replayed {replayed} records to {settings.kafka.topic}")


def register(parent: typer.Typer) -> None:
    """Add import-legacy, lag and demo-data to ``parent``."""
    for command in app.registered_commands:
        parent.registered_commands.append(command)


def register_dlq(parent: typer.Typer) -> None:
    parent.add_typer(dlq_app, name="dlq")
