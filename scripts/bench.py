"""Benchmark the whole pipeline over HTTP against a `handwerk serve` started here: a thin
wrapper of `handwerk bench` (tooling/benchmark/), writing bench-results/bench.json unless
--json says otherwise.

    .venv/bin/python scripts/bench.py --projects 10000
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from handwerk.cli.bench import register


def main() -> None:
    app = typer.Typer(add_completion=False)
    register(app, Console(stderr=True, soft_wrap=True))
    args = sys.argv[1:]
    if not any(a == "--json" or a.startswith("--json=") for a in args):
        args += ["--json", "bench-results/bench.json"]
    app(args)


if __name__ == "__main__":
    main()
