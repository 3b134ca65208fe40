"""The HTTP client of the phases: timed requests against the service's REST API."""

from __future__ import annotations

import time
from typing import Any

from tooling.benchmark.timings import parse_server_timing


class Client:
    def __init__(self, http: Any) -> None:
        self.http = http
        self.timings: list[dict[str, float]] = []

    async def request(self, method: str, path: str, **kw: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        response = await self.http.request(method, path, **kw)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed, response

    async def find(self, query: str, *, top_k: int = 10, threshold: float = 0.3,
                   timing: bool = False, mode: str | None = None) -> tuple[float, list[str]]:
        """One find-similar; ``mode`` None: the service's default (hybrid)."""
        body: dict[str, Any] = {"query": query, "top_k": top_k, "threshold": threshold}
        if mode is not None:
            body["mode"] = mode
        ms, response = await self.request("POST", "/api/v1/similarity/find-similar", json=body)
        if timing:
            self.timings.append(parse_server_timing(response.headers.get("server-timing")))
        return ms, [r["id"] for r in response.json()["results"]]

    async def points(self) -> int:
        _, response = await self.request("GET", "/api/v1/similarity/stats")
        return int(response.json()["points_count"])
