"""A real Prometheus server for tests: free port, temp folder for config and storage, 1 s scrape
and evaluation intervals, the repository's alert rules, and a small client for its HTTP API."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from handwerk.kafka import free_port
from tests.helpers import wait_until
from tests.observability.tools import ALERTS, binary


class PrometheusServer:
    def __init__(self, folder: Path, jobs: dict[str, list[str]], *,
                 rule_files: tuple[Path, ...] = (ALERTS,)) -> None:
        """``jobs``: scrape job name -> ``host:port`` targets (path /metrics)."""
        self.folder, self.jobs, self.rule_files = folder, jobs, rule_files
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "prometheus.log"

    def start(self) -> PrometheusServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        rules = []
        for source in self.rule_files:
            shutil.copy(source, self.folder / source.name)
            rules.append(source.name)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in self.jobs.items()],
        }
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [binary("prometheus"), f"--config.file={self.folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._http = httpx.Client(base_url=self.url, timeout=10)
        wait_until(self._ready, timeout=60, interval=0.2, message="prometheus ready")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited ({self.process.returncode}):\n{self.log_tail()}")
        try:
            return self._http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self._http.close()
            self._log.close()
            self.process = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    # -- HTTP API ---------------------------------------------------------------------------

    def _api(self, path: str, **params: Any) -> Any:
        response = self._http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {response.text[:2000]}"
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query: the vector's series (``metric`` labels and ``value``)."""
        data = self._api("query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None while it returns nothing."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        data = self._api("query_range", query=promql, start=start, end=end, step=step)
        return data["result"]  # type: ignore[no-any-return]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts of that name, from /api/v1/alerts."""
        return [a for a in self._api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def targets(self) -> list[dict[str, Any]]:
        return self._api("targets")["activeTargets"]  # type: ignore[no-any-return]


def finite(series: list[dict[str, Any]]) -> list[float]:
    """Every finite sample of a range query's series (NaN: a quantile over no observations)."""
    return [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]
