"""`handwerk reindex`, `handwerk generations ...` (clients of a running service's admin API) and
the internal `handwerk build-generation` (the builder child a service starts)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from handwerk.generations.jobs import DONE_STATES, SOURCES, JobState

Url = Annotated[str, typer.Option(help="Base URL of the running service.")]
ApiKey = Annotated[str | None, typer.Option(
    envvar="HANDWERK_API_KEY", help="An API key with the admin scope (once keys exist).")]


class _Output:
    console = Console(stderr=True, soft_wrap=True)  # the CLI's own, once register() ran


def register(app: typer.Typer, console: Console) -> None:
    """``reindex``, ``generations list|activate`` and the hidden ``build-generation`` on
    ``app``; messages go to ``console``."""
    _Output.console = console
    generations_app = typer.Typer(no_args_is_help=True,
                                  help="Index generations of a running service.")
    generations_app.command("list")(list_generations)
    generations_app.command("activate")(activate)
    app.add_typer(generations_app, name="generations")
    app.command()(reindex)
    app.command("build-generation", hidden=True)(build_generation)


# ---------------------------------------------------------------- the admin API


def _fail(message: str, code: int = 1) -> typer.Exit:
    _Output.console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _call(method: str, url: str, path: str, body: dict[str, Any] | None = None,
          key: str | None = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else None
    try:
        response = httpx.request(method, f"{url.rstrip('/')}{path}", json=body, timeout=30,
                                 headers=headers)
    except httpx.HTTPError as e:
        raise _fail(f"{url}: {e}") from e
    if response.status_code >= 400:
        try:
            reasons = "; ".join(d.get("msg", "") for d in response.json().get("detail", []))
        except ValueError:
            reasons = response.text[:300]
        raise _fail(f"{response.status_code}: {reasons}")
    return response.json()


def _follow(url: str, key: str | None) -> dict[str, Any]:
    """Progress (rich) until the job ended; returns its last state."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[counts]}"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  console=_Output.console, transient=False) as bar:
        task = bar.add_task("starting", total=None, rate="", counts="")
        while True:
            job = _call("GET", url, "/api/v1/admin/reindex", key=key)
            p = job.get("progress") or {}
            phase = p.get("phase") if job["state"] == JobState.BUILDING else job.get("phase")
            bar.update(task, description=f"{job['generation']} {job['state']}: {phase or ''}",
                       total=p.get("total") or None, completed=p.get("read") or 0,
                       counts=f"{p.get('read') or 0:,}/{p.get('total') or 0:,}",
                       rate=f"{p['rate']:.0f}/s" if p.get("rate") else "")
            if job["state"] in DONE_STATES:
                return job
            time.sleep(0.5)


# ---------------------------------------------------------------- commands


def reindex(url: Url = "http://127.0.0.1:8000", api_key: ApiKey = None,
            source: Annotated[str, typer.Option("--from", help="topic: replay the event "
                                                "topic; db: snapshot every project through "
                                                "the outbox; compaction: rebuild from the "
                                                "live generation.")] = "topic",
            model: Annotated[str | None, typer.Option(help="Model spec for the new "
                                                      "generation (default: the live one's).")] = None,
            force: Annotated[bool, typer.Option(help="Switch even if a gate refuses.")] = False,
            reuse: Annotated[bool, typer.Option(help="Reuse vectors known for the same "
                                                "model and text.")] = True,
            wait: Annotated[bool, typer.Option(help="Show progress; return once the new "
                                               "generation is active (exit 1 if not).")] = False,
            ) -> None:
    """Build a new index generation beside the live one and hand over to it, while the
    service keeps serving."""
    if source not in SOURCES:
        raise _fail(f"--from is {', '.join(SOURCES[:-1])} or {SOURCES[-1]}", 2)
    job = _call("POST", url, "/api/v1/admin/reindex",
                {"source": source, "model": model, "force": force, "reuse_vectors": reuse},
                key=api_key)
    _Output.console.print(f"reindex started: generation {job['generation']} from {source}")
    if not wait:
        return
    try:
        job = _follow(url, api_key)
    except KeyboardInterrupt:
        _Output.console.print("stopped watching; the reindex goes on in the service (watch it "
                              "with GET /api/v1/admin/reindex, or `handwerk generations list`)")
        raise typer.Exit(130) from None
    _Output.console.print_json(json.dumps({k: job[k] for k in ("generation", "state", "error",
                                                                "elapsed_s", "figures")}))
    if job["state"] != JobState.ACTIVE:
        raise typer.Exit(1)


def list_generations(url: Url = "http://127.0.0.1:8000", api_key: ApiKey = None,
                     as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Generations kept: active, state, model, dimension, size, created."""
    rows = _call("GET", url, "/api/v1/admin/generations", key=api_key)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("generation", "active", "state", "model", "dim", "points", "source",
                  "created", "retired")
    for g in rows:
        table.add_row(g["generation"], "*" if g["active"] else "", g["state"], g["model"],
                      str(g["dimension"]), "" if g["points"] is None else str(g["points"]),
                      g["source"], g["created_at"][:19], (g["retired_at"] or "")[:19])
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def activate(name: str, url: Url = "http://127.0.0.1:8000", api_key: ApiKey = None,
             wait: Annotated[bool, typer.Option(help="Return once it is active.")] = True,
             ) -> None:
    """Roll back to a retired generation (within the grace period)."""
    _call("POST", url, f"/api/v1/admin/generations/{name}/activate", key=api_key)
    if wait:
        job = _follow(url, api_key)
        if job["state"] != JobState.ACTIVE:
            raise _fail(job.get("error") or job["state"])
    _Output.console.print(f"{name} is active")


def build_generation(folder: Path) -> None:
    """Internal: the builder child process a service starts for one generation."""
    from handwerk.generations.builder import BuildRequest, build
    from handwerk.process.logs import configure_logging
    from handwerk.settings import Settings

    configure_logging()
    request = BuildRequest.read(folder)
    settings = Settings(**request.settings)
    asyncio.run(build(settings, folder))
