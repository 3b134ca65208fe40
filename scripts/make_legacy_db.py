"""Write a legacy-format projects database (the older service's SQLite file) for trying or
benchmarking `handwerk import-legacy`.

    .venv/bin/python scripts/make_legacy_db.py /tmp/legacy.sqlite --count 1000 --with-embeddings
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.legacy_db import make_legacy_db  # noqa: E402

app = typer.Typer(add_completion=False)


@app.command()
def main(path: Annotated[Path, typer.Argument(help="SQLite file to create (must not exist).")],
         count: Annotated[int, typer.Option(min=1, help="How many projects.")] = 1000,
         with_embeddings: Annotated[bool, typer.Option(
             "--with-embeddings", help="Store all-MiniLM-L6-v2 vectors as JSON arrays (else NULL).")] = False,
         broken: Annotated[int, typer.Option(min=0, help="Rows that fail validation.")] = 0,
         seed: int = 7) -> None:
    embedder = None
    if with_embeddings:
        from handwerk.embedding.embedder import Embedder

        embedder = Embedder(threads=2)
        embedder.load()
    started = time.perf_counter()
    try:
        make_legacy_db(path, count, seed=seed, embedder=embedder, broken=broken)
    finally:
        if embedder is not None:
            embedder.close()
    print(f"wrote {count} legacy projects ({broken} broken, "
          f"{'with' if with_embeddings else 'without'} embeddings) to {path} "
          f"in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    app()
