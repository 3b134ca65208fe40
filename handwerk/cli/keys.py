"""`handwerk keys create|list|revoke`: API keys in the service's database (run next to a
running service; it notices within HANDWERK_AUTH_CACHE_TTL_S)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from handwerk.access.keys import KeyRecord, KeyStore, open_key_store, parse_scopes
from handwerk.settings import Settings

T = TypeVar("T")


def register(app: typer.Typer, console: Console, settings: Callable[[], Settings]) -> None:
    keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
    app.add_typer(keys_app, name="keys")

    def run(action: Callable[[KeyStore], Awaitable[T]]) -> T:
        async def main() -> T:
            async with open_key_store(settings().resolved_database_url) as store:
                return await action(store)

        return asyncio.run(main())

    @keys_app.command("create")
    def create(
            name: Annotated[str, typer.Option(help="Who or what uses the key (1-100 characters).")],
            scope: Annotated[list[str], typer.Option(
                help="read, write, admin or metrics; repeat for several.")],
            rate: Annotated[float | None, typer.Option(
                min=0.001, help="Requests per second for this key (default: "
                "HANDWERK_RATE_LIMIT_PER_S).")] = None,
    ) -> None:
        """Create a key and print it. It is shown this once: only its hash is stored."""
        try:
            scopes = parse_scopes(scope)
        except ValueError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        if not name.strip() or len(name) > 100:
            console.print("[red]error:[/red] --name must be 1 to 100 characters")
            raise typer.Exit(2)
        record, token = run(lambda store: store.create(name.strip(), scopes, rate))
        console.print(f"created key {record.key_id} ({', '.join(sorted(scopes))}); it is shown "
                      "only now, store it safely:")
        print(token)  # stdout, alone, for scripts: KEY=$(handwerk keys create ...)

    @keys_app.command("list")
    def list_keys(
            all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    ) -> None:
        """Keys with their scopes (never the key itself)."""
        records: list[KeyRecord] = run(lambda store: store.list(include_revoked=all_keys))
        table = Table("id", "name", "scopes", "rate/s", "created", "revoked")
        for r in records:
            table.add_row(r.key_id, r.name, " ".join(sorted(r.scopes)),
                          "" if r.rate_per_s is None else f"{r.rate_per_s:g}",
                          f"{r.created_at:%Y-%m-%d %H:%M}",
                          "" if r.revoked_at is None else f"{r.revoked_at:%Y-%m-%d %H:%M}")
        Console(width=160, soft_wrap=True).print(table)

    @keys_app.command("revoke")
    def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
        """Revoke a key; a running service refuses it within HANDWERK_AUTH_CACHE_TTL_S."""
        if not run(lambda store: store.revoke(key_id.strip())):
            console.print(f"[red]error:[/red] no active key {key_id}")
            raise typer.Exit(1)
        console.print(f"revoked key {key_id}")

