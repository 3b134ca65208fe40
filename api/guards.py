"""API keys and rate limits at the HTTP edge: the security schemes (so the OpenAPI document
shows them), one dependency per set of accepted scopes, the error answers they add, and the
OpenAPI document of the mode of the moment (``auto`` runs open until the first key exists).

Routers stay unaware: ``create_app`` attaches these dependencies per router. The checks
themselves live in ``handwerk.access.auth`` and ``handwerk.access.limits``.
"""

from __future__ import annotations

import copy
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from handwerk.access.auth import Authenticator, AuthMode, Principal, Unauthenticated
from handwerk.access.keys import Scope
from handwerk.access.limits import RateLimiter, client_bucket

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
                logging.getLogger(__name__).warning("OpenAPI: could not check whether keys are "
                                                    "enforced; serving the last known mode")
        await self.app(scope, receive, send)


def _gate(request: Request) -> Gate:
    return request.app.state.gate  # type: ignore[no-any-return]


def _token(credentials: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    return header or None


class KeyWithScope:
    """The dependency of a protected route: a key with one of ``scopes`` (while keys are
    enforced), then the rate limit. ``scopes`` is public so a test can check every route."""

    def __init__(self, scopes: frozenset[Scope]) -> None:
        self.scopes = scopes

    async def __call__(
            self, request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
            header: Annotated[str | None, Depends(api_key_header)]) -> Principal | None:
        return await _gate(request).admit(request, _token(credentials, header), self.scopes,
                                          enforce=True)


def requires(*accepted: Scope) -> Any:
    """A dependency: a key with one of ``accepted`` scopes (while keys are enforced), then
    the rate limit."""
    return Depends(KeyWithScope(frozenset(accepted)))


async def _rate_limited(request: Request) -> None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    await _gate(request).admit(request, token or request.headers.get("x-api-key") or None,
                               frozenset(), enforce=False)


rate_limited: Any = Depends(_rate_limited)
"""The dependency of open routes: no key needed, the rate limit still applies."""
