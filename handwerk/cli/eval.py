"""`handwerk eval`: the German relevance benchmark against a running service (see
tooling/relevance/, its core in handwerk/relevance/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer, console: Console) -> None:
    @app.command("eval")
    def eval_command(
        url: Annotated[str, typer.Option(help="Base URL of the running service.")] = "http://127.0.0.1:8000",
        mode: Annotated[str | None, typer.Option(
            help="dense, keyword or hybrid: sent as the find-similar field `mode` (only when given; "
            "the server must support that search mode, else it answers 422).")] = None,
        json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON document "
                                                       "(per class and per query) here too.")] = None,
        load: Annotated[int, typer.Option(
            min=1, help="Corpus size: the first N demo projects of --seed, created through the API "
            "unless already there (the service must hold no other projects).")] = 1000,
        seed: Annotated[int, typer.Option(help="Seed of the demo corpus (7: that of demo-data).")] = 7,
        per_class: Annotated[int | None, typer.Option(
            min=1, help="Only the first N queries of each class.")] = None,
        index_timeout_s: Annotated[float, typer.Option(
            min=1, help="Give up when the corpus is not searchable within this long.")] = 3600.0,
        estimate_holdout: Annotated[int, typer.Option(
            min=0, help="Price this many held-out demo projects (the ones after the loaded "
            "corpus, never loaded) through /api/v1/estimate and score them against two "
            "baselines; 0: skip.")] = 200,
        api_key: Annotated[str | None, typer.Option(
            envvar="HANDWERK_API_KEY", help="A key with the write scope (once keys exist).")] = None,
    ) -> None:
        """Score search relevance as users get it: load the German demo corpus through the REST
        API, wait until it is searchable, run every benchmark query through find-similar (top_k
        10, threshold 0) and print nDCG@10, recall@10 and MRR per query class; then price
        held-out projects through /api/v1/estimate (MAPE, median APE, interval coverage and
        latency, against two baselines)."""
        from handwerk.cli.checkout import NotACheckout, import_tooling

        try:
            tooling = import_tooling("relevance")
        except NotACheckout as e:
            console.print(str(e))
            raise typer.Exit(2) from e
        if mode is not None and mode not in tooling.MODES:
            console.print(f"[red]error:[/red] --mode is one of {', '.join(tooling.MODES)}")
            raise typer.Exit(2)
        config = tooling.EvalConfig(url=url, load=load, seed=seed, mode=mode, per_class=per_class,
                                    api_key=api_key, index_timeout_s=index_timeout_s,
                                    estimate_holdout=estimate_holdout)
        try:
            document = tooling.run_eval(config, log=lambda line: console.print(
                line, markup=False, highlight=False))
        except tooling.EvalError as e:
            console.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
            raise typer.Exit(1) from e
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
        console.print(tooling.render(document))
        if json_path is not None:
            console.print(f"JSON: {json_path}")
