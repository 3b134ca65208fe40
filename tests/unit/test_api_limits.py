"""Limits (issue 10): per-key (or per-address, while open) token buckets answer 429 with
Retry-After; searches past the admission limit answer 503 with Retry-After; top_k and batch
sizes are bounded by the schema; serve/api refuse to listen beyond loopback unprotected."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from handwerk.access.auth import Authenticator, AuthMode, ExposureRefused, exposure_mode
from handwerk.access.keys import KeyStore, Scope, open_key_store
from handwerk.access.limits import RateLimited, RateLimiter, client_bucket
from handwerk.api.app import create_app
from handwerk.api.search import SearchService
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from handwerk.settings.rules import is_loopback
from tests.helpers import EmptyIndex, SlowEncoder, async_wait_until
from tests.unit.test_api_contract import PROJECT, FakeProjects, FakeSearch, assert_error

CREATE = "/api/v1/projects/"
FIND, BATCH = "/api/v1/similarity/find-similar", "/api/v1/similarity/batch-similar"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.retry_after_s == 1  # 0.5 s to the next token, rounded up
    limiter.check("b")  # another client has its own bucket
    clock.now += 0.5
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_a_key_rate_overrides_the_default_and_zero_means_no_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(0.0, clock=clock)
    for _ in range(1000):
        limiter.check("anyone")
    limiter.check("slow", rate_per_s=0.1)  # burst max(1, 2 * 0.1) = 1
    with pytest.raises(RateLimited) as refused:
        limiter.check("slow", rate_per_s=0.1)
    assert refused.value.retry_after_s == 10


def test_the_number_of_buckets_is_bounded() -> None:
    limiter = RateLimiter(1.0, burst=1, max_clients=100, clock=Clock())
    for n in range(1000):
        limiter.check(f"ip:{n}")
    assert len(limiter._buckets) == 100


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    async with open_key_store(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}") as store:
        yield store


def client_for(keys: KeyStore, tmp_path: Path, **settings: object) -> httpx.AsyncClient:
    # allowed_hosts: the Host of the test client (base_url below)
    s = Settings(data_dir=tmp_path, allowed_hosts=["test"], **settings)  # type: ignore[arg-type]
    app = create_app(s)
    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.runtime = SimpleNamespace(metrics=Metrics())
    app.state.gate.authenticator = Authenticator(keys, AuthMode(s.access.mode), ttl_s=s.access.cache_ttl_s)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_over_the_rate_is_429_with_retry_after_per_key(keys: KeyStore, tmp_path: Path) -> None:
    _, first = await keys.create("first", {Scope.WRITE, Scope.READ})
    _, second = await keys.create("second", {Scope.WRITE})
    _, slow = await keys.create("slow", {Scope.WRITE}, rate_per_s=0.01)
    async with client_for(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=2) as client:
        auth = {"Authorization": f"Bearer {first}"}
        assert (await client.post(CREATE, json=PROJECT, headers=auth)).status_code == 201
        assert (await client.get("/api/v1/projects", headers=auth)).status_code == 200
        response = await client.post(CREATE, json=PROJECT, headers=auth)
        errors = assert_error(response, 429)
        assert errors[0]["type"] == "rate_limited"
        assert int(response.headers["retry-after"]) >= 1
        other = {"X-API-Key": second}  # its own bucket
        assert (await client.post(CREATE, json=PROJECT, headers=other)).status_code == 201
        slow_auth = {"X-API-Key": slow}  # its own, lower rate (the same burst)
        for _ in range(2):
            assert (await client.post(CREATE, json=PROJECT, headers=slow_auth)).status_code == 201
        response = await client.post(CREATE, json=PROJECT, headers=slow_auth)
        assert_error(response, 429)
        assert int(response.headers["retry-after"]) == 100


async def test_while_open_the_limit_is_per_client_address(keys: KeyStore, tmp_path: Path) -> None:
    async with client_for(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=1) as client:
        assert (await client.post(FIND, json={"query": "Küche"})).status_code == 200
        response = await client.get("/api/v1/projects")
        assert_error(response, 429)
        assert "retry-after" in response.headers


@pytest.mark.parametrize(("first", "second", "shared"), [
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", True),  # one /64: one host
    ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ("2001:DB8:1:2::1", "2001:db8:1:2::1", True),
    ("::ffff:192.0.2.1", "192.0.2.1", True),  # IPv4-mapped: the IPv4 address
    ("192.0.2.1", "192.0.2.2", False),  # IPv4: per address
])
def test_ipv6_clients_share_a_bucket_per_64(first: str, second: str, shared: bool) -> None:
    assert (client_bucket(first) == client_bucket(second)) is shared
    assert client_bucket(None) == "ip:unknown" and client_bucket("testclient") == "ip:testclient"


async def test_ipv6_addresses_of_one_64_share_the_open_limit(keys: KeyStore, tmp_path: Path) -> None:
    async with client_for(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=2) as client:
        app = client._transport.app  # type: ignore[attr-defined]

        def at(host: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 1)),
                                     base_url="http://test")
        async with at("2001:db8:0:7::1") as a, at("2001:db8:0:7::2") as b, \
                at("2001:db8:0:8::1") as neighbour:
            assert (await a.get("/api/v1/projects")).status_code == 200
            assert (await b.get("/api/v1/projects")).status_code == 200
            assert_error(await a.get("/api/v1/projects"), 429)
            assert_error(await b.get("/api/v1/projects"), 429)  # a new address does not help
            assert (await neighbour.get("/api/v1/projects")).status_code == 200  # another /64


async def test_searches_past_the_admission_limit_are_503_over_http(keys: KeyStore,
                                                                  tmp_path: Path) -> None:
    encoder = SlowEncoder()
    async with client_for(keys, tmp_path) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        app.state.search = SearchService(encoder, EmptyIndex(), max_pending=2)  # type: ignore[arg-type]
        waiting = [asyncio.create_task(client.post(FIND, json={"query": f"Küche {n}"}))
                   for n in range(2)]

        async def both_waiting() -> bool:
            return bool(app.state.search.pending >= 2)
        await async_wait_until(both_waiting, timeout=10, interval=0.01,
                               message="two searches waiting for the encoder")
        response = await client.post(BATCH, json={"queries": ["Treppe"]})
        errors = assert_error(response, 503)
        assert errors[0]["type"] == "overloaded" and response.headers["retry-after"] == "1"
        encoder.release.set()
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200]


@pytest.mark.parametrize(("path", "body", "loc"), [
    (FIND, {"query": "Küche", "top_k": 101}, ["body", "top_k"]),
    (BATCH, {"queries": ["Küche"], "top_k": 101}, ["body", "top_k"]),
    (BATCH, {"queries": ["Küche"] * 33}, ["body", "queries"]),
])
async def test_top_k_and_batch_sizes_are_bounded(keys: KeyStore, tmp_path: Path, path: str,
                                                 body: dict[str, object], loc: list[str]) -> None:
    async with client_for(keys, tmp_path) as client:
        errors = assert_error(await client.post(path, json=body), 422)
        assert errors[0]["loc"] == loc


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("api.example.com", False)])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_beyond_loopback_needs_keys_or_an_explicit_yes(tmp_path: Path) -> None:
    auto = Settings(data_dir=tmp_path)
    assert exposure_mode(auto, "127.0.0.1", 0) is AuthMode.AUTO
    with pytest.raises(ExposureRefused, match="without API keys"):
        exposure_mode(auto, "0.0.0.0", 0)
    assert exposure_mode(auto, "0.0.0.0", 1) is AuthMode.REQUIRED  # never falls back to open
    with pytest.raises(ExposureRefused, match="off"):
        exposure_mode(Settings(data_dir=tmp_path, auth_mode="off"), "0.0.0.0", 3)
    assert exposure_mode(Settings(data_dir=tmp_path, allow_open=True), "0.0.0.0", 0) is AuthMode.AUTO


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    done = subprocess.run([sys.executable, "-m", "handwerk", "serve", "--host", "0.0.0.0",
                           "--data-dir", str(tmp_path / "data")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "without API keys" in done.stderr and "HANDWERK_ALLOW_OPEN" in done.stderr


async def test_the_served_process_ignores_x_forwarded_for(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19 #8: the client address, and so its rate bucket, is the TCP peer (README), also
    for a loopback client that sends X-Forwarded-For: the HTTP server `serve` and `api` run
    (``_serve_http``, over real TCP) trusts no proxy header."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from handwerk.cli import main as cli
    from handwerk.kafka import free_port

    async def whoami(request: Request) -> JSONResponse:
        host = request.client.host if request.client else None
        return JSONResponse({"host": host, "bucket": client_bucket(host), "scheme": request.url.scheme})

    servers: list[uvicorn.Server] = []

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr("handwerk.api.app.create_app",
                        lambda *args, **kwargs: Starlette(routes=[Route("/whoami", whoami)]))
    monkeypatch.setattr(uvicorn, "Server", Server)
    port = free_port()
    serving = asyncio.create_task(cli._serve_http(Settings(data_dir=tmp_path), "127.0.0.1", port, None))
    try:
        async def started() -> bool:
            return bool(servers and servers[0].started)
        await async_wait_until(started, timeout=20, message="the HTTP server started")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/whoami", headers={
                "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https",
                "Forwarded": "for=203.0.113.5;proto=https"})
        assert response.json() == {"host": "127.0.0.1", "bucket": "ip:127.0.0.1", "scheme": "http"}
    finally:
        if servers:
            servers[0].should_exit = True
        await asyncio.wait_for(serving, timeout=20)



JSON = {"Content-Type": "application/json"}
NOT_JSON = b'{"name": '


async def test_keys_are_checked_before_the_body_is_parsed(keys: KeyStore, tmp_path: Path) -> None:
    """Issue 19 #11b: a body that is not JSON, sent without a key, was a 422 (FastAPI parses
    the body before it runs any dependency), so it skipped the key check and both limits.
    The key check now runs first; with a valid key the answers are as before."""
    _, writer = await keys.create("writer", {Scope.WRITE})
    _, admin = await keys.create("admin", {Scope.ADMIN})
    item = f"{CREATE}{'0' * 8}-0000-0000-0000-{'0' * 12}"
    async with client_for(keys, tmp_path) as client:
        for method, path in [("POST", CREATE), ("PUT", item), ("POST", "/api/v1/admin/reindex")]:
            response = await client.request(method, path, content=NOT_JSON, headers=JSON)
            assert assert_error(response, 401)[0]["type"] == "unauthenticated", (method, path)
            assert response.headers["www-authenticate"] == 'Bearer realm="handwerk"'
            guessed = {**JSON, "X-API-Key": "hw_0123456789ab_" + "A" * 43}
            assert_error(await client.request(method, path, content=NOT_JSON, headers=guessed), 401)
        assert_error(await client.post(CREATE, content=NOT_JSON,
                                       headers={**JSON, "X-API-Key": admin}), 403)
        errors = assert_error(await client.post(CREATE, content=NOT_JSON,
                                                headers={**JSON, "X-API-Key": writer}), 422)
        assert errors[0]["type"] == "json_invalid"


async def test_a_body_that_is_not_json_counts_against_the_rate_limit(keys: KeyStore,
                                                                     tmp_path: Path) -> None:
    """Issue 19 #11b: the rate limit is charged before the body is parsed, and once per
    request (the early check and the route's dependency never both charge)."""
    async with client_for(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=2) as client:
        assert (await client.post(FIND, json={"query": "Küche"})).status_code == 200
        assert_error(await client.post(FIND, content=NOT_JSON, headers=JSON), 422)
        response = await client.post(FIND, content=NOT_JSON, headers=JSON)
        assert assert_error(response, 429)[0]["type"] == "rate_limited"
        assert "retry-after" in response.headers
