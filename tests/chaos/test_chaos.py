"""Crash safety under random SIGKILLs, SIGSTOPs and broker restarts during a write load,
judged by the history checker. Short runs here; scripts/chaos.py runs long ones.

Two variants: the whole system (reconcile every 3 s and at startup, broker restarts included)
and the pipeline alone (reconcile off; only faults that keep the broker's log), where nothing
may need reconcile's repair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.chaos.checker import Verdict, check
from tests.chaos.harness import Cluster, History, chaos_run
from tests.conftest import DOCKER

# writes per second: keeps a short run's backlog (and its duration on 2 cores) small while every
# fault still lands on events in flight; scripts/chaos.py writes as fast as answered
WRITE_RATE = 25.0

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DOCKER, reason="drives the local broker and embedded index")]


async def judge(tmp_path: Path, cluster: Cluster, history: History, keep: Path) -> Verdict:
    cluster.stop()
    verdict = await check(tmp_path / "data", cluster.journal, history,
                          cluster.env["HANDWERK_INDEX_ALIAS"])
    if not verdict.ok:
        shutil.copytree(tmp_path, keep, dirs_exist_ok=True)
        (keep / "history.json").write_text(json.dumps({
            "acknowledged": history.acknowledged, "indeterminate": history.indeterminate,
            "aborted": history.aborted, "faults": dict(history.faults),
            "index_observed": history.index_observed}, default=str))
        pytest.fail(json.dumps({"properties": verdict.properties, **verdict.details,
                                "kept": str(keep)}, default=str))
    return verdict


@pytest.mark.timeout(600)
async def test_random_faults_lose_nothing_and_converge(tmp_path: Path) -> None:
    cluster, history, converge_s = await chaos_run(tmp_path, faults=6, min_writes=150, seed=4,
                                                   fault_gap_s=(1.0, 4.0), write_rate=WRITE_RATE,
                                                   converge_timeout_s=300)
    verdict = await judge(tmp_path, cluster, history, Path("/tmp/handwerk-chaos-failure"))
    assert verdict.details["faults_total"] == 6 and verdict.details["writes_acknowledged"] >= 150
    assert converge_s is not None and converge_s < 300


@pytest.mark.timeout(600)
async def test_pipeline_alone_loses_nothing_without_reconcile(tmp_path: Path) -> None:
    cluster, history, converge_s = await chaos_run(tmp_path, faults=6, min_writes=150, seed=5,
                                                   fault_gap_s=(1.0, 4.0), write_rate=WRITE_RATE,
                                                   converge_timeout_s=300, pipeline_only=True)
    verdict = await judge(tmp_path, cluster, history,
                          Path("/tmp/handwerk-chaos-pipeline-only-failure"))
    assert verdict.properties["no_reconcile_reemit"]
    assert verdict.details["reemitted_by_reconcile"] == 0
    assert "restart_broker" not in verdict.details["faults"]
    assert verdict.details["faults_total"] == 6 and verdict.details["writes_acknowledged"] >= 150
    assert converge_s is not None and converge_s < 300
