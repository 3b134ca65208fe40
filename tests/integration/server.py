"""Runs real `handwerk` processes for integration tests (real HTTP, real OS processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from handwerk.kafka import free_port
from tests.helpers import wait_until


def isolated_env(stack_env: dict[str, str], data_dir: Path, name: str | None = None,
                 **extra: str) -> dict[str, str]:
    """Own topics and group per test module, so modules never see each other's events."""
    name = name or uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env.update(stack_env)
    env.update({
        "HANDWERK_DATA_DIR": str(data_dir),
        "HANDWERK_KAFKA_TOPIC": f"handwerk.projects.{name}",
        "HANDWERK_KAFKA_DLQ_TOPIC": f"handwerk.projects.{name}.dlq",
        "HANDWERK_CONSUMER_GROUP": f"handwerk-indexer-{name}",
        "HANDWERK_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HANDWERK_INDEX_ALIAS": f"projects_{name}",
        "HANDWERK_RELAY_POLL_INTERVAL_S": "0.2",
        "HANDWERK_MODEL_CACHE_DIR": str(Path.home() / ".cache" / "handwerk"),
    })
    env.update(extra)
    return env


class HandwerkProcess:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log_path = args, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HandwerkProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "handwerk", *self.args],
                                        env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 40) -> int | None:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Server(HandwerkProcess):
    """`handwerk serve` on a free port; ready when /readyz says so."""

    def __init__(self, env: dict[str, str], log: Path, *extra_args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(["serve", "--port", str(self.port), *extra_args], env, log)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120, *, indexing: bool = True) -> None:
        """Ready to serve; with ``indexing`` (the default) also wait until the indexer holds
        its partitions, so a test's first write is indexed without a group join in between."""
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
            indexer = response.json().get("components", {}).get("indexer")
            return not indexing or indexer in (None, "live", "catching_up")
        wait_until(ready, timeout=timeout, interval=0.2, message="server ready")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)
