"""The PostgreSQL fixture never lets CI pass by skipping: with the server binaries missing,
a plain pytest skips the PostgreSQL runs and says why, `make test` (HANDWERK_REQUIRE_POSTGRES=1)
fails them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.postgres import BINDIR_ENV, REQUIRE_ENV

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

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


def test_server_starts_whatever_locale_the_caller_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """initdb and postgres inherit the environment: a locale the machine has not generated
    (Debian 12 ships without en_US.UTF-8) must not stop the test server."""
    from tests.postgres import PostgresServer, PostgresUnavailable

    for name in ("LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "xx_XX.UTF-8")
    try:
        server = PostgresServer()
    except PostgresUnavailable as e:
        pytest.skip(str(e))
    with server:
        ready = subprocess.run([str(server.bindir / "pg_isready"), "-h", "127.0.0.1",
                                "-p", str(server.port), "-U", "postgres"], check=False)
        assert ready.returncode == 0


def _server_or_skip() -> PostgresServer:
    from tests.postgres import PostgresServer, PostgresUnavailable

    try:
        return PostgresServer()
    except PostgresUnavailable as e:
        pytest.skip(str(e))


def test_failed_start_stops_and_removes_its_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """postgres exits at once (its port is taken): start raises, nothing is left behind."""
    import socket
    import tempfile

    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    server = _server_or_skip()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        with pytest.raises(RuntimeError, match="postgres exited"):
            server.start(timeout=30)
    assert made and not any(os.path.exists(path) for path in made)
    server.stop()  # still idempotent


def test_stop_after_the_server_died_on_its_own() -> None:
    import signal

    server = _server_or_skip()
    server.start()
    try:
        process = server._process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the whole group gone (postmaster, backends)
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    finally:
        server.stop()  # must not raise ProcessLookupError
    assert server._root is None
