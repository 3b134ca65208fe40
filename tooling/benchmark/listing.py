"""List projects, 50 a page: the first page, a deep offset and a deep keyset cursor."""

from __future__ import annotations

import random
from typing import Any

from tooling.benchmark.client import Client
from tooling.benchmark.config import BenchConfig
from tooling.benchmark.stats import latency_summary


async def list_pages(client: Client, config: BenchConfig, *, rng: random.Random) -> dict[str, Any]:
    """``list_requests`` rounds of: the deep keyset page, the first page, a deep offset page."""
    _, response = await client.request("GET", "/api/v1/projects", params={"limit": 1})
    total = int(response.json()["total"])
    first, deep, keyset = [], [], []
    deepest = max(0, total - 50)
    cursor = await _cursor_near(client, deepest)
    for _ in range(config.list_requests):
        if cursor is not None:
            keyset.append((await client.request("GET", "/api/v1/projects",
                                                params={"limit": 50, "cursor": cursor}))[0])
        first.append((await client.request("GET", "/api/v1/projects",
                                           params={"limit": 50, "offset": 0}))[0])
        offset = max(0, deepest - rng.randrange(0, max(1, total // 10)))
        deep.append((await client.request("GET", "/api/v1/projects",
                                          params={"limit": 50, "offset": offset}))[0])
    return {"list_first": latency_summary(first),
            "list_deep": latency_summary(deep) | {"offset_at_least": max(0, deepest - total // 10),
                                                  "total": total},
            "list_cursor": latency_summary(keyset)}


async def _cursor_near(client: Client, deepest: int) -> str | None:
    """A cursor near the end: walk there once with large pages (then the deep keyset page is
    timed from it)."""
    cursor: str | None = None
    walked = 0
    while walked < deepest:
        _, page = await client.request("GET", "/api/v1/projects",
                                       params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        body = page.json()
        walked += len(body["items"])
        if body.get("next_cursor") is None:
            break
        cursor = body["next_cursor"]
    return cursor
