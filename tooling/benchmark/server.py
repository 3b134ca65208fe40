"""The `handwerk serve` child process a run measures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tooling.benchmark.config import BenchError

# Where the service keeps its data and how it is reached: the bench decides these; every other
# HANDWERK_ setting (threads, batch sizes, model) passes through to the server it starts.
_LOCATION_SETTINGS = ("HANDWERK_DATA_DIR", "HANDWERK_DATABASE_URL", "HANDWERK_KAFKA_BOOTSTRAP_SERVERS",
                      "HANDWERK_INDEX_BACKEND", "HANDWERK_QDRANT_URL", "HANDWERK_QDRANT_PATH",
                      "HANDWERK_QDRANT_API_KEY", "HANDWERK_HOST", "HANDWERK_PORT",
                      "HANDWERK_METRICS_PORT", "HANDWERK_CRASH_POINT", "HANDWERK_APPLY_JOURNAL")


class Server:
    """A `handwerk serve` child on a free port; its output goes to a log file."""

    def __init__(self, data: Path, log: Path, model_cache: Path) -> None:
        from handwerk.kafka import free_port

        self.data, self.log, self.port = data, log, free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in _LOCATION_SETTINGS}
        self.env.setdefault("HANDWERK_MODEL_CACHE_DIR", str(model_cache))  # the bench's ONNX file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 600) -> float:
        import httpx

        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handwerk", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        while time.monotonic() - started < timeout_s:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise BenchError(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise BenchError(f"the server was not ready in {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
