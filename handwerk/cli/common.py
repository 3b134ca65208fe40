"""What every command module shares: the console, option types, loading settings, failing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from handwerk.settings import Settings

console = Console(stderr=True, soft_wrap=True)

Host = Annotated[str, typer.Option(help="Bind address (loopback unless told otherwise).")]
Port = Annotated[int, typer.Option(help="HTTP port.")]
DataDir = Annotated[Path | None, typer.Option(help="Data folder (SQLite file, embedded index).")]


def load_settings(data_dir: Path | None = None) -> Settings:
    from handwerk.process.logs import configure_logging

    configure_logging()
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)
