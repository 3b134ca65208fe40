"""The PostgreSQL fixture never lets CI pass by skipping: with the server binaries missing,
a plain pytest skips the PostgreSQL runs and says why, `make test` (HANDWERK_REQUIRE_POSTGRES=1)
fails them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import BINDIR_ENV, REQUIRE_ENV

ROOT = Path(__file__).resolve().parents[2]

PROBE = '''
async def test_probe(database_url: str) -> None:
    assert database_url
'''


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    clean = {k: v for k, v in os.environ.items() if k not in (REQUIRE_ENV, BINDIR_ENV)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
         "-p", "tests.conftest", str(probe)],
        cwd=ROOT, env={**clean, BINDIR_ENV: str(tmp_path / "no-postgres-here"), **env},
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("required", [False, True])
def test_missing_server_skips_locally_and_fails_under_make_test(tmp_path: Path,
                                                                 required: bool) -> None:
    result = run_probe(tmp_path, **({REQUIRE_ENV: "1"} if required else {}))
    out = result.stdout + result.stderr
    assert "holds no postgres binary" in out, out[-3000:]
    if required:
        assert result.returncode != 0 and "1 passed" in out and "error" in out, out[-3000:]
    else:
        assert result.returncode == 0 and "1 passed, 1 skipped" in out, out[-3000:]
