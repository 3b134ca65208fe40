"""A throwaway PostgreSQL server for tests (Debian's `postgresql` package): initdb into a
temporary folder, `postgres` on a free loopback port with its socket in that folder, stopped
and deleted at the end. Like the local broker, a real server, never a mock.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user and
every server command runs through `runuser`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import asyncpg

from handwerk.kafka import free_port

REQUIRE_ENV = "HANDWERK_REQUIRE_POSTGRES"
BINDIR_ENV = "HANDWERK_TEST_POSTGRES_BINDIR"


class PostgresUnavailable(RuntimeError):
    """The server binaries are not installed (or cannot run here); says what to install."""


def find_bindir() -> Path:
    """Debian keeps initdb and postgres in /usr/lib/postgresql/<major>/bin (not on PATH);
    the newest major wins. Falls back to PATH (other distributions). ``BINDIR_ENV`` names
    the folder explicitly (any other build; the fixture's own tests point it at nothing)."""
    explicit = os.environ.get(BINDIR_ENV)
    if explicit is not None:
        if not (Path(explicit) / "postgres").is_file():
            raise PostgresUnavailable(f"{BINDIR_ENV}={explicit} holds no postgres binary")
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql, "
                              "or `make install-test`)")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


class PostgresServer:
    """States: created, started (``url`` valid), stopped. ``stop`` is idempotent."""

    def __init__(self, port: int | None = None) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root needs the `postgres` user to run the "
                                          "server as (Debian's postgresql package creates it)") from None

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_root else []

    def start(self, timeout: float = 60.0) -> None:
        """Fails with RuntimeError (folder removed, server stopped) if the server is not up
        within ``timeout``."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        # as root, under /tmp: a TMPDIR below /root would be closed to the postgres user
        parent = "/tmp" if self._as_root and os.path.isdir("/tmp") else None
        root = self._root = Path(tempfile.mkdtemp(prefix="handwerk-pg-", dir=parent))
        data = root / "data"
        if self._as_root:  # the folder must belong to the user the server runs as
            os.chown(root, self._user.pw_uid, self._user.pw_gid)
        # The caller's locale may not exist here (Debian 12 has no en_US.UTF-8 unless
        # generated) and initdb and postgres refuse an invalid one: C.UTF-8 is always there,
        # and the cluster itself takes no locale (C collation, UTF8 encoding).
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        made = subprocess.run([*self._run_as(), str(self.bindir / "initdb"), "-D", str(data),
                               "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale",
                               "--no-sync"],
                              check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=root, env=env, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed ({made.returncode}): {made.stderr[-2000:]}")
        # Durability settings off: a test server's data dies with the test anyway.
        with (root / "postgres.log").open("ab") as log_file:  # the child keeps its own copy
            self._process = subprocess.Popen(
                [*self._run_as(), str(self.bindir / "postgres"), "-D", str(data),
                 "-p", str(self.port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                cwd=root)  # a folder the server's user may enter (a root checkout may not be)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (root / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with {self._process.returncode}:\n{log}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1",
                                    "-p", str(self.port), "-U", "postgres", "-q"], check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            # fast shutdown; runuser forwards the signal to the server it started. The group
            # may be gone already (the server exited on its own): nothing left to stop then.
            _signal_group(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    async def create_database(self) -> str:
        """A fresh, empty database; returns its async SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self.url(driver="postgresql"))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        connection = await asyncpg.connect(self.url(driver="postgresql"))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
