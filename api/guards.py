"""API keys and rate limits at the HTTP edge: the security schemes (so the OpenAPI document
shows them), one dependency per set of accepted scopes, and the error answers they add.

Routers stay unaware: ``create_app`` attaches these dependencies per router. The checks
themselves live in ``handwerk.access.auth`` and ``handwerk.access.limits``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _json_error("No API key, or an unknown or revoked one",
                     **{"WWW-Authenticate": "`Bearer realm=\"handwerk\"`"}),
    403: _json_error("The API key lacks the scope this route needs"),
    **RATE_LIMITED}


class Gate:
    """One per app: decides who may pass and how often. ``authenticator`` is attached by the
    lifespan (it needs the database); until then only ``mode=off`` lets requests through.

    ``failures`` limits, per client address, the requests that cost a key lookup or fail the
    key check (no key, an unknown, malformed or revoked one): always on, so guessing keys is
    slow and cannot turn into one database query per request."""

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
        """The caller (None: anonymous), after the key check where ``enforce`` and the rate
        limit of that key, or of the client address for anonymous callers."""
        auth = self._auth()
        address = client_bucket(request.client.host if request.client else None)
        principal: Principal | None = None
        if auth is not None and (enforce or token is not None) and await auth.enforced():
            if token is None:
                self.failures.check(address)
                raise Unauthenticated("API key required (Authorization: Bearer or X-API-Key)")
            if not auth.known(token):
                self.failures.check(address)  # before the lookup
            try:
                principal = await auth.identify(token)
            except Unauthenticated:
                if enforce:
                    raise
                principal = None  # an open route: a valid key only decides whose limit applies
        if principal is None:
            self.limiter.check(address)
            return None
        self.limiter.check(f"key:{principal.key_id}", principal.rate_per_s)
        if enforce:
            principal.require(accepted)
        return principal


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
