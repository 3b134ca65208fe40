"""Soak: `handwerk serve` on embedded defaults under steady writes and searches for an hour,
with a compaction, a reindex from the topic and one SIGKILL + restart; slopes, plot, verdict.

    .venv/bin/python scripts/soak.py                       # the hour: 20 writes/s, 20 searches/s
    .venv/bin/python scripts/soak.py --minutes 3 --write-rate 5 --search-rate 5   # a quick look
    .venv/bin/python scripts/soak.py --rejudge bench-results/soak-X.json  # today's rules and limits

Writes bench-results/soak-<UTC timestamp>.{json,png,log}, prints the table and the verdict,
and exits 0 on PASS, 1 on FAIL. The rules of the verdict are printed with it (and listed in
``tooling.soak.analysis.Tolerances``); every limit has a flag.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tooling/ and tests/ (the checker)

from tooling.soak.analysis import Tolerances  # noqa: E402
from tooling.soak.run import SoakConfig, run_soak  # noqa: E402


def parse(argv: list[str] | None = None) -> tuple[Path | None, SoakConfig]:
    """The stored soak to judge again (``--rejudge``), if any, and the run's configuration."""
    defaults, limits = SoakConfig(), Tolerances()
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--minutes", type=float, default=defaults.minutes)
    p.add_argument("--write-rate", type=float, default=defaults.write_rate, help="writes/s")
    p.add_argument("--search-rate", type=float, default=defaults.search_rate, help="searches/s")
    p.add_argument("--seed-projects", type=int, default=defaults.seed_projects,
                   help="projects created (and indexed) before the clock starts")
    p.add_argument("--sample-interval", type=float, default=defaults.sample_interval_s,
                   help="seconds between samples")
    p.add_argument("--probe-every", type=int, default=defaults.probe_every,
                   help="every Nth write waits until indexed (write -> searchable)")
    p.add_argument("--warmup-share", type=float, default=defaults.warmup_share,
                   help="share of the run left out of the slopes after the start and the restart")
    p.add_argument("--settle", type=float, default=defaults.settle_s,
                   help="seconds after a compaction/reindex left out of the slopes")
    p.add_argument("--tombstone-horizon", type=float, default=defaults.tombstone_horizon_s,
                   help="HANDWERK_TOMBSTONE_HORIZON_S for serve (shorter than the run, so the "
                   "tombstones reach their bound within it); 0: serve's default (7 days)")
    p.add_argument("--generation-grace", type=float, default=defaults.generation_grace_s,
                   help="HANDWERK_GENERATION_GRACE_S for serve (replaced generations kept for "
                   "rollback); 0: serve's default (1 h)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, default=defaults.out_dir, help="where results go")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the data folder and serve log here (default: temporary, removed)")
    p.add_argument("--rejudge", type=Path, default=None, metavar="JSON",
                   help="run nothing: judge a stored soak again with these limits and the "
                   "current rules, and rewrite its analysis, plot and JSON")
    for name, value in dataclasses.asdict(limits).items():
        flag = name if name.startswith(("max_", "min_")) else f"max_{name}"
        p.add_argument(f"--{flag.replace('_', '-')}", type=float, default=value,
                       dest=f"limit_{name}", help="verdict limit")
    args = p.parse_args(argv)
    tolerances = Tolerances(**{name: getattr(args, f"limit_{name}") for name in dataclasses.asdict(limits)})
    return args.rejudge, SoakConfig(
        minutes=args.minutes, write_rate=args.write_rate, search_rate=args.search_rate,
        seed_projects=args.seed_projects, sample_interval_s=args.sample_interval,
        probe_every=args.probe_every, warmup_share=args.warmup_share, settle_s=args.settle,
        seed=args.seed, out_dir=args.out, workdir=args.workdir, tolerances=tolerances,
        tombstone_horizon_s=args.tombstone_horizon or None,
        generation_grace_s=args.generation_grace or None)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from tooling.soak.report import table

    stored, config = parse(argv)
    console = Console()
    if not console.is_terminal:  # piped to a file: wide enough for the table
        console = Console(width=160)
    if stored is not None:
        document, path = rejudged(stored, config.tolerances), stored
    else:
        document, path = asyncio.run(run_soak(
            config, log=lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)))
    console.print(table(document))
    for rule in document["analysis"]["rules"]:
        console.print(f"  rule: {rule}")
    if not document["checker"]["ok"]:
        console.print(document["checker"])
    console.print(f"series: {document['files']['png']}  document: {path}")
    console.print(f"VERDICT: {document['analysis']['verdict']}")
    return 0 if document["analysis"]["verdict"] == "PASS" else 1


def rejudged(path: Path, tolerances: Tolerances) -> dict[str, Any]:
    """A stored soak judged again: its analysis, tolerances and plot rewritten in place."""
    from tooling.soak.analysis import rejudge
    from tooling.soak.report import plot, write_json

    document: dict[str, Any] = json.loads(path.read_text())
    document["analysis"] = rejudge(document, tolerances)
    document["tolerances"] = dataclasses.asdict(tolerances)
    plot(document, path.with_suffix(".png"))
    write_json(document, path)
    return document


if __name__ == "__main__":
    raise SystemExit(main())
