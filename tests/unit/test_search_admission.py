"""Query admission is bounded: past the limit a search is refused at once with 503 and
Retry-After (review #6.9), instead of growing an unbounded queue in front of the encoder."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from handwerk.api.errors import install_error_handlers
from handwerk.api.search import SearchOverloaded, SearchService
from tests.helpers import EmptyIndex, SlowEncoder


async def test_searches_past_the_limit_are_refused_and_the_rest_complete() -> None:
    encoder = SlowEncoder()
    service = SearchService(encoder, EmptyIndex(), max_pending=3)  # type: ignore[arg-type]
    admitted = [asyncio.create_task(service.find_similar("Küche", top_k=5, threshold=0.3,
                                                         filters=None)) for _ in range(3)]
    await asyncio.sleep(0)
    assert service.pending == 3
    with pytest.raises(SearchOverloaded):
        await service.find_similar("Treppe", top_k=5, threshold=0.3, filters=None)
    encoder.release.set()
    assert all(r.total_found == 0 for r in await asyncio.gather(*admitted))
    assert service.pending == 0
    await service.find_similar("Treppe", top_k=5, threshold=0.3, filters=None)  # room again


def test_overload_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise SearchOverloaded(64)

    response = TestClient(app).get("/boom")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"][0]["type"] == "overloaded"
