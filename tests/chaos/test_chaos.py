"""Crash safety under random SIGKILLs, SIGSTOPs and broker restarts during a write load,
judged by the history checker. A short run here; scripts/chaos.py runs long ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.checker import check
from tests.chaos.harness import chaos_run
from tests.conftest import DOCKER

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(DOCKER, reason="drives the local broker and embedded index")]


@pytest.mark.timeout(600)
async def test_random_faults_lose_nothing_and_converge(tmp_path: Path) -> None:
    cluster, history, converge_s = await chaos_run(tmp_path, faults=6, min_writes=150, seed=4,
                                                   fault_gap_s=(1.0, 4.0))
    cluster.stop()
    verdict = await check(tmp_path / "data", cluster.journal, history,
                          cluster.env["HANDWERK_INDEX_ALIAS"])
    if not verdict.ok:
        import json
        import shutil
        keep = Path("/tmp/handwerk-chaos-failure")
        shutil.copytree(tmp_path, keep, dirs_exist_ok=True)
        (keep / "history.json").write_text(json.dumps({
            "acknowledged": history.acknowledged, "indeterminate": history.indeterminate,
            "aborted": history.aborted}, default=str))
        pytest.fail(json.dumps({"properties": verdict.properties, **verdict.details}, default=str))
    assert verdict.details["faults_total"] == 6 and verdict.details["writes_acknowledged"] >= 150
    assert converge_s < 300
