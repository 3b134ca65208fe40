"""The soak (scripts/soak.py) end to end, at low rates for about a minute: it drives serve,
runs its compaction, reindex and SIGKILL + restart, samples every series the verdict reads,
writes its PNG and JSON, and the chaos checker passes on every acknowledged write. Slopes of so
short a run prove nothing (the one-hour run does that); this checks the instrument."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_a_short_soak_samples_every_series_and_the_checker_passes(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "1", "--write-rate", "3",
         "--search-rate", "3", "--seed-projects", "40", "--sample-interval", "3", "--settle", "5",
         "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=840, cwd=ROOT)
    assert run.returncode in (0, 1), run.stdout[-4000:] + run.stderr[-4000:]
    assert "VERDICT:" in run.stdout
    [document_path] = (tmp_path / "out").glob("soak-*.json")
    document = json.loads(document_path.read_text())
    png = document_path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert document["checker"]["ok"], document["checker"]
    assert document["writes"]["acknowledged"] > 40
    assert {e["name"] for e in document["events"]} >= {"compaction", "reindex", "restart"}
    assert document["jobs"]["compaction"]["state"] == "active"
    assert document["jobs"]["reindex"]["state"] == "active"

    samples = document["samples"]
    assert len(samples) >= 15
    settled = samples[-1]
    assert {"serve", "broker"} <= set(settled["processes"])
    for figures in settled["processes"].values():
        assert figures["rss_mb"] > 0 and figures["fds"] > 0
    assert {"handwerk.db", "index", "vector-cache.sqlite"} <= set(settled["disk"]["stores"])
    assert settled["items"]["handwerk.db"] and settled["items"]["index"]
    assert settled["lag"] == 0 and settled["outbox_backlog"] == 0
    assert any(s["search"]["p50"] for s in samples) and any(s["search"]["p99"] for s in samples)
    assert any(s["searchable"]["p50"] for s in samples)
    # the serve was SIGKILLed and came back: another pid, and a sample while it was down shows
    # no serve process at all (not a zombie with 0 MB)
    assert all(s["processes"].get("serve", {}).get("rss_mb", 1) > 0 for s in samples)

    slopes = document["analysis"]["slopes"]
    for name in ("serve.rss_mb", "serve.fds", "serve.files", "serve.sockets", "broker.rss_mb",
                 "broker.fds", "disk.index", "disk.handwerk.db", "search p50", "search p99",
                 "write-to-searchable p50"):
        assert name in slopes, name
    names = {c["name"] for c in document["analysis"]["checks"]}
    assert {"chaos checker", "serve ready after SIGKILL", "serve rss_mb slope",
            "serve files slope", "serve sockets slope"} <= names
    assert document["analysis"]["verdict"] in ("PASS", "FAIL")
