"""API keys and rate limits at the HTTP edge: the security schemes (so the OpenAPI document
shows them), one dependency per set of accepted scopes, the error answers they add, and the
OpenAPI document of the mode of the moment (``auto`` runs open until the first key exists);
and who may reach the service at all: the allowed ``Host`` names (DNS rebinding) and, while
keys are not enforced, no state-changing request from another site's page (``Origin``).

Routers stay unaware: ``create_app`` attaches these dependencies per router, and runs each
one before the request body is read (``before_body``): a request that fails the key check
or a limit is answered without its body being parsed. The checks themselves live in
``handwerk.access.auth`` and ``handwerk.access.limits``.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from handwerk.access.auth import Authenticator, AuthMode, Principal, Unauthenticated
from handwerk.access.keys import Scope
from handwerk.access.limits import RateLimiter, client_bucket
from handwerk.api.errors import error_item, error_response

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, scheme_name="bearerKey",
                    description="`Authorization: Bearer hw_...` (an API key, `handwerk keys create`)")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader",
                              description="The same API key in an `X-API-Key` header")



def _json_error(description: str, **headers: str) -> dict[str, Any]:
    """An ErrorOut answer spelled out as JSON: also right on routes that answer text
    (/metrics), where FastAPI would list a model under the route's own media type."""
    out: dict[str, Any] = {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    if headers:
        out["headers"] = {name: {"description": text, "schema": {
            "type": "integer" if name == "Retry-After" else "string"}}
            for name, text in headers.items()}
    return out


RATE_LIMITED: dict[int | str, dict[str, Any]] = {429: _json_error(
    "Too many requests from this key (or client address)", **{"Retry-After": "Seconds to wait"})}
OFFERED_KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _json_error("An unknown or revoked API key was given (none is needed here)",
                     **{"WWW-Authenticate": "`Bearer realm=\"handwerk\"`"}),
    **RATE_LIMITED}
"""The answers of an open route where keys are checked: a key is optional, but one that is
given must be valid."""
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _json_error("No API key, or an unknown or revoked one",
                     **{"WWW-Authenticate": "`Bearer realm=\"handwerk\"`"}),
    403: _json_error("The API key lacks the scope this route needs"),
    **RATE_LIMITED}


class Gate:
    """One per app: decides who may pass and how often. ``authenticator`` is attached by the
    lifespan (it needs the database); until then only ``mode=off`` lets requests through.

    ``failures`` limits, per client address, the failed key checks (no key where one is
    needed, an unknown, malformed or revoked one): always on, so guessing keys is slow and
    cannot turn into one database query per request. A lookup takes its token first and gives
    it back when the key is valid; past the limit only keys that exist are looked up, so the
    failures of others at an address never lock out a valid key there."""

    def __init__(self, mode: AuthMode, limiter: RateLimiter,
                 failures: RateLimiter | None = None) -> None:
        self.mode = mode
        self.limiter = limiter
        self.failures = failures if failures is not None else RateLimiter(10.0, 20)
        self.authenticator: Authenticator | None = None

    def _auth(self) -> Authenticator | None:
        if self.mode is AuthMode.OFF:
            return None
        if self.authenticator is None:
            raise RuntimeError("API key checks are not set up (the app's lifespan did not run)")
        return self.authenticator

    async def admit(self, request: Request, token: str | None, accepted: frozenset[Scope],
                    *, enforce: bool) -> Principal | None:
        """The caller (None: anonymous), then the rate limit of that key, or of the client
        address (the TCP peer) for anonymous callers.

        A key that is given is always checked, also on open routes and while keys are not
        enforced: an invalid one is 401, never anonymous (a typo must not write as nobody).
        Where ``enforce`` and keys are enforced, no key is 401 and a key needs one of
        ``accepted``; elsewhere a valid key only decides whose limit applies."""
        auth = self._auth()
        address = client_bucket(request.client.host if request.client else None)
        principal: Principal | None = None
        if auth is not None:
            if token is not None:
                principal = await self._identify(auth, address, token)
            elif enforce and await auth.enforced():
                self.failures.check(address)
                raise Unauthenticated("API key required (Authorization: Bearer or X-API-Key)")
        if principal is None:
            self.limiter.check(address)
            return None
        self.limiter.check(f"key:{principal.key_id}", principal.rate_per_s)
        if enforce and auth is not None and await auth.enforced():
            principal.require(accepted)
        return principal

    async def _identify(self, auth: Authenticator, address: str, token: str) -> Principal | None:
        """``auth.identify`` under the failure limit of ``address``, which a failed check is
        charged to. A lookup takes its token before the query (so parallel guesses cannot run
        more queries than the limit) and gives it back if the key is valid. Past the limit,
        a key that exists is still looked up (its cache entry may have expired); a made-up one
        is refused (429) without a query."""
        if auth.known(token):
            return await auth.identify(token)  # from the cache: no query, cannot fail
        reserved = self.failures.take(address)
        if not reserved and not await auth.may_exist(token):
            self.failures.check(address)  # 429; or refilled meanwhile, and charged now
            reserved = True
        try:
            principal = await auth.identify(token)
        except Unauthenticated:
            if not reserved:
                self.failures.check(address)  # a key that exists, but the check failed
            raise
        if reserved:
            self.failures.give_back(address)
        return principal

    def documents_keys(self) -> bool:
        """Whether the OpenAPI document should say that the routes asking for a key need one
        now: ``auto`` as last found (not known yet: yes, the stricter answer); otherwise yes
        (``off`` routes ask for no key at all)."""
        if self.mode is not AuthMode.AUTO or self.authenticator is None:
            return True
        return self.authenticator.last_enforced() is not False

    async def refresh(self) -> None:
        """Find out whether keys are enforced now (``auto``: cached for the key cache TTL)."""
        if self.mode is AuthMode.AUTO and self.authenticator is not None:
            await self.authenticator.enforced()

    async def enforced(self) -> bool:
        """Whether a key is needed now (``off``: never; before the lifespan set up the key
        check: only ``required``)."""
        if self.mode is AuthMode.OFF or self.authenticator is None:
            return self.mode is AuthMode.REQUIRED
        return await self.authenticator.enforced()


def with_optional_security(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI ``document`` in which a key is optional: an empty requirement
    (``{}``) next to the security schemes of every operation that lists them."""
    out = copy.deepcopy(document)
    for methods in out.get("paths", {}).values():
        for operation in methods.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation["security"] = [*operation["security"], {}]
    return out


class OpenApiForTheMode:
    """``app.openapi`` that tells the truth in every mode: FastAPI's document (cached) while
    keys are enforced, else the same with keys optional (cached per base document)."""

    def __init__(self, base: Any, gate: Gate) -> None:
        self.base, self.gate = base, gate
        self._optional: tuple[dict[str, Any], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        document: dict[str, Any] = self.base()
        if self.gate.documents_keys():
            return document
        if self._optional is None or self._optional[0] is not document:
            self._optional = (document, with_optional_security(document))
        return self._optional[1]


class RefreshBeforeOpenApi:
    """Pure ASGI middleware: before the OpenAPI document is served, the gate finds out whether
    keys are enforced now, so the document follows ``auto`` mode (the first key created) even
    when no protected route has been called since."""

    def __init__(self, app: ASGIApp, gate: Gate, path: str) -> None:
        self.app, self.gate, self.path = app, gate, path

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith(self.path):
            try:
                await self.gate.refresh()
            except Exception:  # database down: the document shows the last mode known
                log.warning("OpenAPI: could not check whether keys are enforced; serving the "
                            "last known mode")
        await self.app(scope, receive, send)


def _gate(request: Request) -> Gate:
    return request.app.state.gate  # type: ignore[no-any-return]


def _token(credentials: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    return header or None


def presented_token(request: Request) -> str | None:
    """The key a request presents, read as ``bearer`` and ``api_key_header`` read it:
    ``Authorization: Bearer <key>`` (scheme in any case), else ``X-API-Key``."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    return token or request.headers.get("x-api-key") or None


_ADMITTED = "handwerk.admitted"
"""Request scope key: the caller ``before_body`` admitted (the route's dependency then only
returns it, so one request is checked, and charged to a limit, once)."""


class KeyWithScope:
    """The dependency of a protected route: a key with one of ``scopes`` (while keys are
    enforced), then the rate limit. ``scopes`` is public so a test can check every route."""

    def __init__(self, scopes: frozenset[Scope]) -> None:
        self.scopes = scopes

    async def __call__(
            self, request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
            header: Annotated[str | None, Depends(api_key_header)]) -> Principal | None:
        if _ADMITTED in request.scope:
            return request.scope[_ADMITTED]  # type: ignore[no-any-return]
        return await _gate(request).admit(request, _token(credentials, header), self.scopes,
                                          enforce=True)

    async def before_body(self, request: Request) -> None:
        request.scope[_ADMITTED] = await _gate(request).admit(
            request, presented_token(request), self.scopes, enforce=True)


def requires(*accepted: Scope) -> Any:
    """A dependency: a key with one of ``accepted`` scopes (while keys are enforced), then
    the rate limit."""
    return Depends(KeyWithScope(frozenset(accepted)))


class AnyCaller:
    """The dependency of open routes: no key needed (one that is given must be valid), the
    rate limit still applies."""

    async def __call__(self, request: Request) -> None:
        if _ADMITTED not in request.scope:
            await self.before_body(request)

    async def before_body(self, request: Request) -> None:
        request.scope[_ADMITTED] = await _gate(request).admit(
            request, presented_token(request), frozenset(), enforce=False)


rate_limited: Any = Depends(AnyCaller())
"""The dependency of open routes: no key needed, the rate limit still applies."""

Hook = Callable[[Request], Awaitable[None]]


class BeforeBody:
    """The key check and rate limit of each guarded route, run by its route class before
    the body is read (FastAPI reads and parses the body before any dependency runs, so a
    body that is not JSON would be answered 422 without a key, past both limits). Found by
    the route's endpoint: the same function whichever route object FastAPI serves it from."""

    def __init__(self) -> None:
        self._hooks: dict[Callable[..., Any], Hook] = {}

    def add(self, routes: Iterable[BaseRoute], dependencies: Sequence[Any]) -> None:
        """Run the ``before_body`` of the one of ``dependencies`` (``Depends``) that has one
        before the body of each of ``routes`` is read."""
        hooks: list[Hook] = [hook for d in dependencies
                             if (hook := getattr(d.dependency, "before_body", None)) is not None]
        if len(hooks) > 1:
            raise ValueError("one guard per route")
        for route in routes:
            endpoint = getattr(route, "endpoint", None)
            if not hooks or endpoint is None:
                continue
            if self._hooks.setdefault(endpoint, hooks[0]) != hooks[0]:
                raise ValueError(f"{endpoint.__name__} is served twice, with other guards")

    async def __call__(self, route: BaseRoute, request: Request) -> None:
        endpoint = getattr(route, "endpoint", None)
        hook = self._hooks.get(endpoint) if endpoint is not None else None
        if hook is not None:
            await hook(request)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_hosts(configured: Iterable[str], bind_host: str | None) -> list[str]:
    """The ``Host`` patterns the service answers (as Starlette's TrustedHostMiddleware
    matches them: IPv6 literals in brackets): the loopback names, the ``configured`` ones
    and the address it is bound to (not a wildcard address such as 0.0.0.0: no client names
    that)."""
    out: list[str] = []
    for name in [*LOOPBACK_HOSTS, *configured, *([bind_host] if bind_host else [])]:
        host = name.strip().lower()
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            pattern = host
        else:
            if address.is_unspecified:
                continue
            pattern = f"[{address.compressed}]" if address.version == 6 else address.compressed
        if pattern and pattern not in out:
            out.append(pattern)
    return out


def _matches(host: str, patterns: Sequence[str]) -> bool:
    """TrustedHostMiddleware's rule: the name itself, ``*``, or ``*.domain`` for subdomains."""
    return any(host == p or p == "*" or (p.startswith("*.") and host.endswith(p[1:]))
               for p in patterns)


async def _mark_trusted(scope: AsgiScope, _receive: Receive, _send: Send) -> None:
    scope["handwerk.trusted_host"] = True


async def _discard(_message: Message) -> None:
    return None


class TrustedHosts:
    """Pure ASGI middleware: Starlette's ``TrustedHostMiddleware`` decides whether the
    ``Host`` is allowed (``allowed_hosts``); a refusal is 400 in the one error shape, not
    its plain-text answer. Against DNS rebinding: a page whose name was made to resolve to
    this machine still sends its own name as ``Host``."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(_mark_trusted, allowed_hosts=list(hosts),
                                           www_redirect=False)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        await self.check(scope, receive, _discard)
        if scope.pop("handwerk.trusted_host", False):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await error_response(400, [error_item(
                ["header", "Host"], "this Host is not served here: a loopback name, the bind "
                "address or one of HANDWERK_ALLOWED_HOSTS", "invalid_host")])(scope, receive, send)


def same_site(origin: str, hosts: Sequence[str]) -> bool:
    """Whether a request's ``Origin`` is a page of an allowed host (any port; ``null``, the
    origin of sandboxed and file pages, is not)."""
    try:
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return _matches(f"[{host}]" if ":" in host else host, hosts)


class CrossSiteWrites:
    """Pure ASGI middleware: while keys are not enforced, a state-changing request (POST,
    PUT, PATCH, DELETE) whose ``Origin`` is another site is 403 in the one error shape. A
    browser sends ``Origin`` with every such request from a page; tools (curl, the CLI,
    httpx) send none. With keys enforced the key decides (a page cannot send one)."""

    def __init__(self, app: ASGIApp, gate: Gate, hosts: Sequence[str]) -> None:
        self.app, self.gate, self.hosts = app, gate, list(hosts)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _STATE_CHANGING:
            origin = Headers(scope=scope).get("origin")
            if origin is not None and not same_site(origin, self.hosts) \
                    and not await self._enforced():
                await error_response(403, [error_item(
                    ["header", "Origin"], "a state-changing request from another site's page "
                    "is refused while API keys are not enforced", "cross_site")])(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _enforced(self) -> bool:
        try:
            return await self.gate.enforced()
        except Exception:  # database down: cannot tell, so refuse
            log.warning("could not check whether API keys are enforced; refusing a cross-site "
                        "request", exc_info=True)
            return False
