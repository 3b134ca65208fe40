"""Chaos run with N random faults during a sustained write load; prints the checker's verdict.

    .venv/bin/python scripts/chaos.py --faults 20 --writes 5000                  # whole system
    .venv/bin/python scripts/chaos.py --faults 20 --writes 5000 --pipeline-only  # no reconcile

--pipeline-only turns reconcile off (periodic and at startup) and draws only faults that keep
the broker's log (SIGKILL/SIGSTOP of the serving process, which is the consumer, and of the
relay); the verdict then also requires reemitted_by_reconcile == 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness lives in tests/

from tests.chaos.checker import check  # noqa: E402
from tests.chaos.harness import chaos_run  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        started = time.monotonic()
        cluster, history, converge_s = await chaos_run(
            workdir, faults=args.faults, min_writes=args.writes, seed=args.seed,
            fault_gap_s=(args.min_gap, args.max_gap), converge_timeout_s=args.converge_timeout,
            pipeline_only=args.pipeline_only, write_rate=args.write_rate)
        cluster.stop()
        verdict = await check(workdir / "data", cluster.journal, history,
                              cluster.env["HANDWERK_INDEX_ALIAS"])
        report = {"verdict": "PASS" if verdict.ok else "FAIL", "properties": verdict.properties,
                  **verdict.details,
                  "seconds_to_converge_after_last_fault":
                      None if converge_s is None else round(converge_s, 1),
                  "run_seconds": round(time.monotonic() - started, 1)}
        print(json.dumps(report, indent=2, default=str))
        if args.keep:
            import shutil
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
            (args.keep / "history.json").write_text(json.dumps({
                "acknowledged": history.acknowledged, "indeterminate": history.indeterminate,
                "aborted": history.aborted, "faults": dict(history.faults),
                "index_observed": history.index_observed}, default=str))
        return 0 if verdict.ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-gap", type=float, default=3.0)
    parser.add_argument("--max-gap", type=float, default=10.0)
    parser.add_argument("--converge-timeout", type=float, default=900.0,
                        help="Hard cap; the wait ends earlier after 60 s without progress.")
    parser.add_argument("--write-rate", type=float, default=None,
                        help="Cap on write requests per second (default: as fast as answered).")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="Reconcile off; only faults that keep the broker's log.")
    parser.add_argument("--keep", type=Path, default=None, help="Copy logs and data here.")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
