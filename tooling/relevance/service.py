"""The running service, over its REST API: what projects it holds, loading the corpus into it,
waiting until every project is searchable, and the searches themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from handwerk.relevance.corpus import Corpus

Log = Callable[[str], None]


class EvalError(RuntimeError):
    """The eval cannot go on (the message says why and what to do)."""


async def call(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    """One request; retried while the service answers 503/429 (busy), with its Retry-After."""
    for attempt in range(30):
        try:
            response = await http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise EvalError(f"{http.base_url}: {e!r}") from e
        if response.status_code in (429, 503) and attempt < 29:
            await asyncio.sleep(min(float(response.headers.get("retry-after", "1") or 1), 5.0))
            continue
        if response.status_code in (401, 403):
            raise EvalError(f"{method} {path}: {response.status_code}; pass a key with the write "
                            "(and, where reads are protected, read) scope: --api-key")
        if response.status_code >= 400:
            raise EvalError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()
    raise AssertionError("unreachable")


async def stored_projects(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every project the service holds (keyset pages of 500)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = await call(http, "GET", "/api/v1/projects", params=params)
        out += page["items"]
        if not page.get("next_cursor"):
            return out
        params = {"limit": 500, "cursor": page["next_cursor"]}


async def load(http: httpx.AsyncClient, corpus: Corpus, log: Log, concurrency: int = 8) -> dict[str, int]:
    """Create the corpus projects the service does not hold yet (known by description). A
    service that holds anything else is refused: its projects would be unjudged hits."""
    stored = await stored_projects(http)
    known = corpus.by_description
    seen: dict[str, int] = {}
    for p in stored:
        seen[p["description"]] = seen.get(p["description"], 0) + 1
    foreign = sum(n for d, n in seen.items() if d not in known)
    if foreign:
        raise EvalError(
            f"the service holds {foreign} projects that are not among the first {len(corpus)} demo "
            f"projects of seed {corpus.seed}; run the eval against an empty service, or one that "
            "only an earlier `handwerk eval` (or `handwerk demo-data`) with this seed has loaded, "
            "with --load at least as large as that")
    doubled = sum(n - 1 for n in seen.values() if n > 1)
    if doubled:
        raise EvalError(f"{doubled} corpus projects are stored more than once; delete the copies "
                        "or use an empty service")
    missing = [p for p in corpus.projects if p["description"] not in seen]
    log(f"corpus: {len(corpus)} projects (seed {corpus.seed}); {len(corpus) - len(missing)} "
        f"already there, creating {len(missing)}")
    queue = iter(missing)

    async def writer() -> None:
        for project in queue:
            await call(http, "POST", "/api/v1/projects/", json=project)

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    return {"present": len(corpus) - len(missing), "created": len(missing)}


async def wait_searchable(http: httpx.AsyncClient, total: int, log: Log, timeout_s: float,
                          interval_s: float = 2.0) -> float:
    """Wait until every stored project's indexed version is its version; the seconds waited."""
    started = last_log = time.monotonic()
    while True:
        stored = await stored_projects(http)
        pending = sum(p["indexed_version"] != p["version"] for p in stored)
        if pending == 0 and len(stored) >= total:
            return time.monotonic() - started
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise EvalError(f"{pending} of {len(stored)} projects were still not searchable after "
                            f"{timeout_s:.0f} s")
        if time.monotonic() - last_log >= 10:
            last_log = time.monotonic()
            log(f"indexing: {len(stored) - pending}/{len(stored)} searchable after {waited:.0f} s")
        await asyncio.sleep(interval_s)


async def search_all(http: httpx.AsyncClient, bodies: Sequence[dict[str, Any]],
                     concurrency: int = 4,
                     modes: set[str] | None = None) -> list[list[dict[str, Any]]]:
    """find-similar for every request body; the hits of each, in order. ``modes`` collects the
    search modes that answered."""
    results: list[list[dict[str, Any]]] = [[] for _ in bodies]
    order = iter(range(len(bodies)))

    async def searcher() -> None:
        for i in order:
            try:
                found = await call(http, "POST", "/api/v1/similarity/find-similar", json=bodies[i])
            except EvalError as e:
                if "mode" in bodies[i] and " 422 " in str(e) and "mode" in str(e):
                    raise EvalError(f"the server refused mode={bodies[i]['mode']!r} (422): it does "
                                    "not support that search mode") from e
                raise
            results[i] = found["results"]
            if modes is not None:
                modes.add(str(found.get("mode", "dense")))

    await asyncio.gather(*(searcher() for _ in range(concurrency)))
    return results


def client(url: str, api_key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60, headers=headers)
