"""API keys at the HTTP edge (issue 10): the real app and a real key store, on SQLite and on
PostgreSQL, with stand-in search and project services (no broker, index or model; the live
service is exercised in tests/integration/test_api_auth.py and, with an all-scopes key, by
schemathesis).

Pinned: a fresh local install runs open; once a key exists, writes need a ``write`` key and
admin routes an ``admin`` key (401 with WWW-Authenticate without one, 403 with the wrong
scope, in the one error shape), given as ``Authorization: Bearer`` or ``X-API-Key``; reads
need a ``read`` key only when configured; ``/metrics`` takes ``metrics`` or ``admin``; keys are
stored hashed; a revoked key stops working within the cache TTL; lookups are cached."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text

from handwerk.access.auth import Authenticator, AuthMode, Unauthenticated
from handwerk.access.keys import KeyRecord, KeyStore, Scope, hash_token, new_token, open_key_store
from handwerk.access.limits import RateLimiter
from handwerk.api.app import create_app
from handwerk.api.estimate.service import EstimateService
from handwerk.api.guards import KeyWithScope
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.helpers import async_wait_until
from tests.unit.test_api_contract import PROJECT, FakeProjects, FakeSearch, assert_error
from tests.unit.test_api_estimate import PricedSearch

CREATE, LIST, FIND = "/api/v1/projects/", "/api/v1/projects", "/api/v1/similarity/find-similar"
ADMIN = "/api/v1/admin/generations"
TTL = 0.3


class CountingKeyStore(KeyStore):
    """The real store, counting the lookups that reach the database."""

    def __init__(self, store: KeyStore) -> None:
        super().__init__(store.sessions)
        self.lookups = 0

    async def get(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        return await super().get(key_id)


@pytest.fixture
async def keys(database_url: str) -> AsyncIterator[CountingKeyStore]:
    """The key store on SQLite and on PostgreSQL (``database_url``), migrated to head."""
    async with open_key_store(database_url) as store:
        yield CountingKeyStore(store)


def make_client(keys: KeyStore, tmp_path: Path, **settings: Any) -> httpx.AsyncClient:
    # allowed_hosts: the Host of the test client (base_url below)
    s = Settings(data_dir=tmp_path, auth_cache_ttl_s=TTL, allowed_hosts=["test"], **settings)
    app = create_app(s)  # no lifespan: the stand-ins and the real key check are set here
    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.runtime = SimpleNamespace(metrics=Metrics())
    app.state.gate.authenticator = Authenticator(keys, AuthMode(s.access.mode), ttl_s=TTL)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_open_until_the_first_key_then_writes_need_a_write_key(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    async with make_client(keys, tmp_path) as client:
        assert (await client.post(CREATE, json=PROJECT)).status_code == 201  # fresh install: open
        _, writer = await keys.create("writer", {Scope.WRITE})

        async def closed() -> bool:
            return (await client.post(CREATE, json=PROJECT)).status_code == 401
        await async_wait_until(closed, timeout=5, message="keys enforced once one exists")

        response = await client.post(CREATE, json=PROJECT)
        errors = assert_error(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="handwerk"'
        assert errors[0]["type"] == "unauthenticated"
        assert (await client.post(CREATE, json=PROJECT, headers=bearer(writer))).status_code == 201
        assert (await client.post(CREATE, json=PROJECT,
                                  headers={"X-API-Key": writer})).status_code == 201
        # reads stay open unless configured
        assert (await client.get(LIST)).status_code == 200
        assert (await client.post(FIND, json={"query": "Küche"})).status_code == 200


@pytest.mark.parametrize("token", [
    "not-a-key", "hw_", "hw_0123456789ab_" + "A" * 43,  # well-formed, unknown id
])
async def test_malformed_or_unknown_keys_are_401(keys: CountingKeyStore, tmp_path: Path,
                                                 token: str) -> None:
    await keys.create("writer", {Scope.WRITE})
    async with make_client(keys, tmp_path) as client:
        assert_error(await client.post(CREATE, json=PROJECT, headers=bearer(token)), 401)
        assert_error(await client.post(CREATE, json=PROJECT, headers={"X-API-Key": token}), 401)
        assert_error(await client.post(CREATE, json=PROJECT,
                                       headers={"Authorization": f"Basic {token}"}), 401)


async def test_a_known_id_with_a_wrong_secret_is_401(keys: CountingKeyStore, tmp_path: Path) -> None:
    record, token = await keys.create("writer", {Scope.WRITE})
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    async with make_client(keys, tmp_path) as client:
        assert_error(await client.post(CREATE, json=PROJECT, headers=bearer(forged)), 401)
        assert (await client.post(CREATE, json=PROJECT, headers=bearer(token))).status_code == 201


async def test_wrong_scope_is_403(keys: CountingKeyStore, tmp_path: Path) -> None:
    _, reader = await keys.create("reader", {Scope.READ})
    _, writer = await keys.create("writer", {Scope.WRITE})
    _, admin = await keys.create("admin", {Scope.ADMIN})
    _, scraper = await keys.create("prometheus", {Scope.METRICS})
    async with make_client(keys, tmp_path) as client:
        errors = assert_error(await client.post(CREATE, json=PROJECT, headers=bearer(reader)), 403)
        assert errors[0]["type"] == "forbidden" and reader not in errors[0]["msg"]
        assert_error(await client.delete(f"{CREATE}{'0' * 8}-0000-0000-0000-{'0' * 12}",
                                         headers=bearer(admin)), 403)  # admin cannot write
        assert_error(await client.get(ADMIN, headers=bearer(writer)), 403)
        assert_error(await client.get(ADMIN), 401)
        # /metrics: metrics or admin
        assert_error(await client.get("/metrics"), 401)
        assert_error(await client.get("/metrics", headers=bearer(writer)), 403)
        assert (await client.get("/metrics", headers=bearer(scraper))).status_code == 200
        assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
        # health stays open for probes
        assert (await client.get("/api/v1/events/schema")).status_code == 200


async def test_reads_need_a_read_key_when_configured(keys: CountingKeyStore, tmp_path: Path) -> None:
    _, reader = await keys.create("reader", {Scope.READ})
    _, writer = await keys.create("writer", {Scope.WRITE})
    async with make_client(keys, tmp_path, auth_protect_reads=True) as client:
        assert_error(await client.get(LIST), 401)
        assert_error(await client.post(FIND, json={"query": "Küche"}), 401)
        assert_error(await client.get(LIST, headers=bearer(writer)), 403)
        assert (await client.get(LIST, headers=bearer(reader))).status_code == 200
        assert (await client.post(FIND, json={"query": "Küche"},
                                  headers=bearer(reader))).status_code == 200


async def test_required_mode_needs_keys_even_when_none_exist(keys: CountingKeyStore,
                                                             tmp_path: Path) -> None:
    async with make_client(keys, tmp_path, auth_mode="required") as client:
        assert_error(await client.post(CREATE, json=PROJECT), 401)


async def test_a_revoked_key_stops_working_within_the_ttl(keys: CountingKeyStore,
                                                          tmp_path: Path) -> None:
    record, token = await keys.create("writer", {Scope.WRITE})
    _, other = await keys.create("other", {Scope.WRITE})
    async with make_client(keys, tmp_path) as client:
        assert (await client.post(CREATE, json=PROJECT, headers=bearer(token))).status_code == 201
        assert await keys.revoke(record.key_id)
        assert not await keys.revoke(record.key_id)  # only once

        async def refused() -> bool:
            return (await client.post(CREATE, json=PROJECT, headers=bearer(token))).status_code == 401
        await async_wait_until(refused, timeout=TTL + 2, interval=0.05, message="revocation")
        assert (await client.post(CREATE, json=PROJECT, headers=bearer(other))).status_code == 201


async def test_lookups_are_cached_for_the_ttl(keys: CountingKeyStore, tmp_path: Path) -> None:
    _, token = await keys.create("writer", {Scope.WRITE})
    ttl = 300.0
    s = Settings(data_dir=tmp_path, auth_cache_ttl_s=ttl, allowed_hosts=["test"])
    app = create_app(s)
    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.gate.authenticator = Authenticator(keys, AuthMode.AUTO, ttl_s=ttl)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        for _ in range(20):
            assert (await client.post(CREATE, json=PROJECT, headers=bearer(token))).status_code == 201
    assert keys.lookups == 1


async def test_keys_are_stored_hashed(keys: CountingKeyStore) -> None:
    record, token = await keys.create("writer", {Scope.WRITE, Scope.READ})
    assert token.startswith(f"hw_{record.key_id}_") and len(token) == 3 + 12 + 1 + 43
    async with keys.sessions() as session:
        rows = (await session.execute(text("SELECT * FROM api_keys"))).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert token not in stored and token.split("_", 2)[2] not in stored
    assert rows[0]["key_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0]["scopes"] == "read write"


async def test_openapi_shows_the_security_schemes_where_keys_are_needed(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    await keys.create("writer", {Scope.WRITE})  # keys enforced (open: the test below)
    async with make_client(keys, tmp_path) as client:
        spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {**schemes["bearerKey"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["in"] == "header" and schemes["apiKeyHeader"]["name"] == "X-API-Key"
    paths = spec["paths"]
    for path, method in [("/api/v1/projects/", "post"), ("/api/v1/projects/{project_id}", "put"),
                         ("/api/v1/projects/{project_id}", "delete"), ("/metrics", "get"),
                         ("/api/v1/admin/reindex", "post")]:
        operation = paths[path][method]
        assert operation["security"] == [{"bearerKey": []}, {"apiKeyHeader": []}], (path, method)
        assert {"401", "403", "429"} <= set(operation["responses"]), (path, method)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    for path, method in [("/api/v1/projects", "get"), ("/api/v1/similarity/find-similar", "post"),
                         ("/healthz", "get")]:
        assert "security" not in paths[path][method], (path, method)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guessed_key() -> str:
    """A well-formed key that does not exist."""
    return f"hw_{secrets.token_hex(6)}_" + "A" * 43


def from_address(app: FastAPI, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 40000)),
                             base_url="http://test")


async def test_guessed_keys_are_limited_per_address_before_the_lookup(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    """Failed key checks are rate limited per client address even where the request rate
    limit would never see them, and the limit is charged before the database lookup."""
    _, writer = await keys.create("writer", {Scope.WRITE})
    defaults = Settings(data_dir=tmp_path)
    assert (defaults.access.failure_rate_per_s, defaults.access.failure_burst) == (10.0, 20)
    async with make_client(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=1) as client:
        app: FastAPI = client._transport.app  # type: ignore[attr-defined]
        gate = app.state.gate
        gate.failures = RateLimiter(defaults.access.failure_rate_per_s, defaults.access.failure_burst,
                                    clock=Clock())  # the defaults, on a clock that stands still
        gate.authenticator = Authenticator(keys, AuthMode.AUTO, ttl_s=300)
        async with from_address(app, "198.51.100.7") as attacker, \
                from_address(app, "203.0.113.9") as other:
            assert (await other.post(CREATE, json=PROJECT,  # a lookup: charged to `other`
                                     headers=bearer(writer))).status_code == 201  # now cached
            lookups = keys.lookups
            answers = [await attacker.post(CREATE, json=PROJECT, headers=bearer(guessed_key()))
                       for _ in range(50)]
            assert [r.status_code for r in answers] == [401] * 20 + [429] * 30
            assert int(answers[-1].headers["retry-after"]) >= 1
            assert keys.lookups - lookups == 20  # none once the address is over its limit
            # no key at all is a failed check too
            assert (await attacker.post(CREATE, json=PROJECT)).status_code == 429
            # a key already known passes without a lookup; another address is unaffected
            assert (await attacker.post(CREATE, json=PROJECT,
                                        headers=bearer(writer))).status_code == 429  # its rate
            assert (await other.post(CREATE, json=PROJECT,
                                     headers=bearer(guessed_key()))).status_code == 401


async def test_requests_without_a_key_are_limited_per_address(keys: CountingKeyStore,
                                                              tmp_path: Path) -> None:
    await keys.create("writer", {Scope.WRITE})
    async with make_client(keys, tmp_path) as client:
        app: FastAPI = client._transport.app  # type: ignore[attr-defined]
        app.state.gate.failures = RateLimiter(1.0, 3, clock=Clock())
        codes = [(await client.post(CREATE, json=PROJECT)).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]


async def test_a_wrong_scope_counts_against_the_key_rate(keys: CountingKeyStore,
                                                         tmp_path: Path) -> None:
    _, reader = await keys.create("reader", {Scope.READ})
    async with make_client(keys, tmp_path, rate_limit_per_s=0.5, rate_limit_burst=2) as client:
        codes = [(await client.post(CREATE, json=PROJECT, headers=bearer(reader))).status_code
                 for _ in range(4)]
    assert codes == [403, 403, 429, 429]


async def test_unknown_keys_have_their_own_bounded_cache(keys: CountingKeyStore) -> None:
    """Made-up key ids cannot evict real keys from the cache, nor grow memory without bound."""
    _, token = await keys.create("writer", {Scope.WRITE})
    auth = Authenticator(keys, AuthMode.AUTO, ttl_s=300, max_cached=10, max_misses=5)
    assert (await auth.identify(token)) is not None and keys.lookups == 1
    guessed = [guessed_key() for _ in range(100)]
    for made_up in guessed:
        with pytest.raises(Unauthenticated):
            await auth.identify(made_up)
    assert keys.lookups == 101 and len(auth._misses) == 5
    assert auth.known(token) and not auth.known(guessed[-1])
    assert (await auth.identify(token)) is not None and keys.lookups == 101
    with pytest.raises(Unauthenticated):  # a recent miss is answered from its cache
        await auth.identify(guessed[-1])
    assert keys.lookups == 101


READ_POSTS = {"/api/v1/similarity/find-similar", "/api/v1/similarity/batch-similar",
              "/api/v1/estimate"}
OPEN = {"/api/v1/events/schema"}


def served_routes(app: FastAPI) -> list[Any]:
    """Every route with a FastAPI ``dependant``, as served: FastAPI 0.165 keeps included
    routers as such in ``app.routes`` (``iter_route_contexts`` flattens them), older versions
    copy their routes there."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # pragma: no cover - FastAPI < 0.165
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [r for r in iter_route_contexts(app.routes) if getattr(r, "dependant", None) is not None]


def expected_scopes(route: Any) -> frozenset[Scope] | None:
    """The scopes a route must ask for when reads are protected too (None: open)."""
    if route.path in OPEN or route.path in ("/healthz", "/readyz"):
        return None
    if route.path == "/metrics":
        return frozenset({Scope.METRICS, Scope.ADMIN})
    if route.path.startswith("/api/v1/admin"):
        return frozenset({Scope.ADMIN})
    if route.methods <= {"GET", "HEAD"} or route.path in READ_POSTS:
        return frozenset({Scope.READ})
    return frozenset({Scope.WRITE})


def scope_checks(route: Any) -> list[frozenset[Scope]]:
    return [d.call.scopes for d in route.dependant.dependencies if isinstance(d.call, KeyWithScope)]


@pytest.mark.parametrize("protect_reads", [True, False])
def test_every_api_route_asks_for_its_scope(tmp_path: Path, protect_reads: bool) -> None:
    """A new /api/v1 route (or a router attached without its dependency) fails here."""
    app = create_app(Settings(data_dir=tmp_path, auth_protect_reads=protect_reads))
    routes = served_routes(app)
    assert sum(r.path.startswith("/api/v1/") for r in routes) >= 10
    for route in routes:
        if not route.path.startswith(("/api/v1/", "/metrics", "/healthz", "/readyz")):
            raise AssertionError(f"{route.path}: a route outside /api/v1 needs a rule here")
        expected = expected_scopes(route)
        if expected == frozenset({Scope.READ}) and not protect_reads:
            expected = None
        assert scope_checks(route) == ([] if expected is None else [expected]), (
            route.path, route.methods)


async def test_a_valid_key_is_admitted_after_bad_keys_from_its_address(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    """Issue 19 #7: failed key checks from an address must not lock out a valid key from the
    same address whose cache entry expired (or that this process never saw): only a lookup
    that fails is charged. Made-up key ids are still refused without a lookup while the
    address is over its limit."""
    _, writer = await keys.create("writer", {Scope.WRITE})
    _, unseen = await keys.create("unseen", {Scope.WRITE})
    async with make_client(keys, tmp_path) as client:
        app: FastAPI = client._transport.app  # type: ignore[attr-defined]
        gate, clock = app.state.gate, Clock()
        gate.failures = RateLimiter(10.0, 20, clock=Clock())  # a clock that stands still
        gate.authenticator = Authenticator(keys, AuthMode.AUTO, ttl_s=5.0, clock=clock)
        async with from_address(app, "198.51.100.7") as caller:
            assert (await caller.post(CREATE, json=PROJECT, headers=bearer(writer))).status_code == 201
            codes = [(await caller.post(CREATE, json=PROJECT, headers=bearer(guessed_key()))).status_code
                     for _ in range(25)]
            assert set(codes) == {401, 429} and codes[-1] == 429  # the address is over its limit
            clock.now += 6  # the writer's cache entry has expired
            lookups = keys.lookups
            assert (await caller.post(CREATE, json=PROJECT, headers=bearer(writer))).status_code == 201
            assert (await caller.post(CREATE, json=PROJECT, headers=bearer(unseen))).status_code == 201
            assert keys.lookups - lookups == 2
            # still over its limit for anything that fails, without a lookup of made-up ids
            assert (await caller.post(CREATE, json=PROJECT,
                                      headers=bearer(guessed_key()))).status_code == 429
            assert (await caller.post(CREATE, json=PROJECT)).status_code == 429
            assert keys.lookups - lookups == 2


async def test_auto_mode_stays_enforced_once_a_key_existed(
        keys: CountingKeyStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 19 #9: revoking the last key does not open the service again in ``auto``."""
    record, admin = await keys.create("admin", {Scope.ADMIN})
    async with make_client(keys, tmp_path) as client:
        app: FastAPI = client._transport.app  # type: ignore[attr-defined]
        clock = Clock()
        app.state.gate.authenticator = Authenticator(keys, AuthMode.AUTO, ttl_s=5.0, clock=clock)
        assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
        assert await keys.revoke(record.key_id)
        with caplog.at_level("WARNING", logger="handwerk.access.auth"):
            for _ in range(3):
                clock.now += 6  # past the cache
                assert_error(await client.get("/metrics"), 401)
                assert_error(await client.get(ADMIN), 401)
                assert_error(await client.post(CREATE, json=PROJECT), 401)
                assert_error(await client.get("/metrics", headers=bearer(admin)), 401)
    stays = [r for r in caplog.records if "stay" in r.getMessage()]
    assert len(stays) == 1 and "HANDWERK_AUTH_MODE" in stays[0].getMessage()  # logged once
    # a process started after the revocation enforces them too
    assert await Authenticator(keys, AuthMode.AUTO, ttl_s=5.0).enforced()


async def test_an_invalid_key_is_401_even_while_the_service_runs_open(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    """Issue 18 §2: an offered credential fails closed (a typo never writes as anonymous),
    whether the route needs a key or not and whether keys are enforced or not."""
    async with make_client(keys, tmp_path) as client:  # no key exists: open
        assert (await client.post(CREATE, json=PROJECT)).status_code == 201
        for token in ("typo", guessed_key()):
            for headers in (bearer(token), {"X-API-Key": token}):
                assert_error(await client.post(CREATE, json=PROJECT, headers=headers), 401)
                assert_error(await client.get(LIST, headers=headers), 401)
                assert_error(await client.post(FIND, json={"query": "Küche"}, headers=headers), 401)
        _, reader = await keys.create("reader", {Scope.READ})

        async def closed() -> bool:
            return (await client.post(CREATE, json=PROJECT)).status_code == 401
        await async_wait_until(closed, timeout=5, message="keys enforced once one exists")
        assert (await client.get(LIST, headers=bearer(reader))).status_code == 200
        assert_error(await client.get(LIST, headers=bearer(guessed_key())), 401)  # an open route


def operations_security(spec: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(path, method): operation.get("security") for path, methods in spec["paths"].items()
            for method, operation in methods.items()}


async def test_openapi_security_is_optional_while_keys_are_not_enforced(
        keys: CountingKeyStore, tmp_path: Path) -> None:
    """Issue 18 §2: the served document follows the mode of the moment: in ``auto`` it says
    a key is optional (``{}`` among the requirements) until the first key exists."""
    schemes = [{"bearerKey": []}, {"apiKeyHeader": []}]
    async with make_client(keys, tmp_path) as client:
        open_spec = (await client.get("/openapi.json")).json()
        secured = {k: v for k, v in operations_security(open_spec).items() if v is not None}
        assert ("/api/v1/projects/", "post") in secured and ("/metrics", "get") in secured
        assert ("/api/v1/admin/reindex", "post") in secured
        assert all(v == [*schemes, {}] for v in secured.values()), secured
        await keys.create("writer", {Scope.WRITE})

        async def enforced_spec() -> dict[str, Any] | None:
            spec: dict[str, Any] = (await client.get("/openapi.json")).json()
            return spec if spec["paths"]["/metrics"]["get"]["security"] == schemes else None
        spec = await async_wait_until(enforced_spec, timeout=5, message="document follows")
        assert {k: v for k, v in operations_security(spec).items() if v is not None} == dict.fromkeys(
            secured, schemes)
    async with make_client(keys, tmp_path, auth_mode="required") as client:
        spec = (await client.get("/openapi.json")).json()
    assert {k: v for k, v in operations_security(spec).items() if v is not None} == dict.fromkeys(
        secured, schemes)


class MemoryKeys(KeyStore):
    """Keys in a dict: the in-process fuzzer calls the app on schemathesis's own event loop,
    where a database engine made on the test's loop cannot go."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.rows: dict[str, KeyRecord] = {}

    async def create(self, name: str, scopes: Any, rate_per_s: float | None = None
                     ) -> tuple[KeyRecord, str]:
        key_id, token = new_token()
        self.rows[key_id] = KeyRecord(key_id, name, frozenset(scopes), hash_token(token),
                                      rate_per_s, datetime.now(UTC), None)
        return self.rows[key_id], token

    async def get(self, key_id: str) -> KeyRecord | None:
        return self.rows.get(key_id)

    async def counts(self) -> tuple[int, int]:
        return len(self.rows), sum(r.active for r in self.rows.values())

    async def ids(self) -> frozenset[str]:
        return frozenset(self.rows)


# The routes the stand-ins serve (admin, health and stats need the runtime: the real service
# is fuzzed in both modes in tests/integration/test_api_fuzz.py).
FUZZ_EXAMPLES = 10
FUZZED = ("/api/v1/projects", "/api/v1/similarity/find-similar", "/api/v1/similarity/batch-similar",
          "/api/v1/estimate", "/metrics")


@pytest.mark.parametrize("mode", ["open", "keys"])
def test_schemathesis_every_check_in_process_open_and_with_keys(tmp_path: Path, mode: str) -> None:
    """Issue 18 §2: every schemathesis check passes whether ``auto`` runs open (no key yet:
    the document makes keys optional) or keys are enforced (``ignored_auth`` then proves each
    protected route refuses no key and an invalid one). Driven through ``as_strategy`` with
    hypothesis: schemathesis' ``from_fixture`` fails under pytest 9."""
    import asyncio

    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS

    store = MemoryKeys()
    headers = {}
    if mode == "keys":
        _, token = asyncio.run(store.create("fuzz", set(Scope)))
        headers = bearer(token)
    # The fuzzer sends many made-up keys from one address: the failure limit is tested above.
    s = Settings(data_dir=tmp_path, auth_failure_rate_per_s=100_000, auth_failure_burst=100_000,
                 allowed_hosts=["testserver"])  # schemathesis' in-process Host
    app = create_app(s)
    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.estimate = EstimateService(PricedSearch())  # type: ignore[arg-type]
    app.state.runtime = SimpleNamespace(metrics=Metrics())
    app.state.gate.authenticator = Authenticator(store, AuthMode.AUTO, ttl_s=60)

    async def without_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # refused before any message: no lifespan, as served here
            raise RuntimeError("the stand-ins need no lifespan")
        await app(scope, receive, send)

    schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan)
    checks = list(CHECKS.get_all())
    secured = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(FUZZED):
            continue
        security = operation.definition.raw.get("security")
        secured += bool(security)
        assert security is None or ({} in security) == (mode == "open"), (operation.label, security)
        for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=generation))
            def run(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=checks)
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert generation is GenerationMode.NEGATIVE, operation.label
    assert secured >= 4  # writes and /metrics
