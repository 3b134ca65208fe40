"""Who is calling, and may they: API keys checked against the key store, with a short cache.

Modes (``HANDWERK_AUTH_MODE``): ``auto`` requires a key once any key has been created (a
fresh local install runs open; revoking every key does not open it again), ``required`` always
requires one, ``off`` never does. Looking a key up costs a database query, so results are
cached for ``ttl_s``: a revocation, or the first key created, takes effect within that time.
Keys that exist (active or revoked) share one cache, bounded by the table; "no such key"
answers have their own smaller one, so a flood of made-up keys cannot evict real ones (the
HTTP edge also limits failed attempts per client address, and past that limit looks up only
ids that exist: ``may_exist``).

Binding the API to an address other than loopback without keys is refused unless
``HANDWERK_ALLOW_OPEN=1`` says that is intended; with keys, such a process requires them even
if every key is later revoked (it never falls back to open).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from handwerk.access.keys import KeyRecord, KeyStore, Scope, key_id_of, open_key_store
from handwerk.settings import Settings
from handwerk.settings.rules import is_loopback

_V = TypeVar("_V")

log = logging.getLogger(__name__)


class AuthMode(StrEnum):
    AUTO = "auto"
    REQUIRED = "required"
    OFF = "off"


class Unauthenticated(Exception):
    """No key, or one that is unknown, malformed or revoked (HTTP 401)."""


class Forbidden(Exception):
    """A valid key without the scope the route needs (HTTP 403)."""


class ExposureRefused(Exception):
    """The API would listen beyond loopback with nothing protecting it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller that presented a valid key."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    rate_per_s: float | None

    def require(self, accepted: Collection[Scope]) -> None:
        if not self.scopes & set(accepted):
            needed = " or ".join(sorted(s.value for s in accepted))
            raise Forbidden(f"API key {self.key_id} lacks the scope this route needs ({needed})")


class Authenticator:
    """Resolves a presented token to a ``Principal``; caches lookups for ``ttl_s`` seconds
    (keys that exist: up to ``max_cached``; unknown key ids: up to ``max_misses``)."""

    def __init__(self, keys: KeyStore, mode: AuthMode = AuthMode.AUTO, *, ttl_s: float = 5.0,
                 max_cached: int = 10_000, max_misses: int = 1_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.mode = mode
        self._ttl_s = ttl_s
        self._max_cached = max_cached
        self._max_misses = max_misses
        self._clock = clock
        self._records: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._counted: float | None = None  # auto: when the key table was last counted
        self._keys_existed = False  # auto: a key has existed, so keys stay enforced
        self._told_revoked = False
        self._ids: tuple[float, frozenset[str]] | None = None

    async def enforced(self) -> bool:
        """Whether a key is needed now (``auto``: once any key exists or has existed: a revoked
        key counts, so revoking the last key never opens the service again)."""
        if self.mode is not AuthMode.AUTO:
            return self.mode is AuthMode.REQUIRED
        now = self._clock()
        if not self._told_revoked and (self._counted is None or now - self._counted >= self._ttl_s):
            self._counted = now
            created, active = await self.keys.counts()
            self._keys_existed = self._keys_existed or created > 0
            if self._keys_existed and active == 0:
                self._told_revoked = True  # nothing left to learn from counting: it stays enforced
                log.warning("every API key is revoked: HANDWERK_AUTH_MODE=auto stays enforced "
                            "(keys have existed), so protected routes answer 401 until a key is "
                            "created (`handwerk keys create`); HANDWERK_AUTH_MODE=off runs open")
        return self._keys_existed

    def last_enforced(self) -> bool | None:
        """What ``enforced`` found last, for callers that cannot wait on the database
        (None: ``auto`` and not asked yet)."""
        if self.mode is not AuthMode.AUTO:
            return self.mode is AuthMode.REQUIRED
        return None if self._counted is None else self._keys_existed

    def known(self, token: str) -> bool:
        """Whether ``token`` is an active key already in the cache: no lookup needed."""
        key_id = key_id_of(token)
        cached = self._records.get(key_id) if key_id is not None else None
        return (cached is not None and self._clock() - cached[0] < self._ttl_s
                and cached[1].active and cached[1].matches(token))

    async def may_exist(self, token: str) -> bool:
        """Whether ``token`` names a key that exists (active or revoked), without looking that
        key up: from the cache of keys seen, else from the ids of all keys, read at most once
        per ``ttl_s`` (a flood of made-up ids costs one query per ``ttl_s``, not one each; a
        key created since the last read is seen within ``ttl_s``)."""
        key_id = key_id_of(token)
        if key_id is None:
            return False
        if key_id in self._records:
            return True
        now = self._clock()
        missed = self._misses.get(key_id)
        if missed is not None and now - missed < self._ttl_s:
            return False
        if self._ids is None or now - self._ids[0] >= self._ttl_s:
            self._ids = (now, await self.keys.ids())
        return key_id in self._ids[1]

    async def _record(self, key_id: str) -> KeyRecord | None:
        now = self._clock()
        cached = self._records.get(key_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        missed = self._misses.get(key_id)
        if missed is not None and now - missed < self._ttl_s:
            return None
        record = await self.keys.get(key_id)
        if record is None:
            self._records.pop(key_id, None)
            _remember(self._misses, key_id, now, self._max_misses)
        else:
            self._misses.pop(key_id, None)
            _remember(self._records, key_id, (now, record), self._max_cached)
        return record

    async def identify(self, token: str | None) -> Principal | None:
        """The key's holder; None without a token. Raises ``Unauthenticated`` for a token that
        is not an active key."""
        if token is None:
            return None
        key_id = key_id_of(token)
        record = await self._record(key_id) if key_id is not None else None
        if record is None or not record.matches(token):
            raise Unauthenticated("unknown API key")
        if not record.active:
            raise Unauthenticated("API key revoked")
        return Principal(record.key_id, record.name, record.scopes, record.rate_per_s)


def _remember(cache: OrderedDict[str, _V], key: str, value: _V, limit: int) -> None:
    """Put ``key`` last (most recent) and drop the oldest entries beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def exposure_mode(settings: Settings, host: str, active_keys: int) -> AuthMode:
    """The auth mode a server bound to ``host`` runs with, or ``ExposureRefused``."""
    mode = AuthMode(settings.access.mode)
    if is_loopback(host) or settings.access.allow_open:
        return mode
    if mode is AuthMode.OFF:
        raise ExposureRefused(f"refusing to serve on {host} with HANDWERK_AUTH_MODE=off; set "
                              "HANDWERK_ALLOW_OPEN=1 if an open API there is intended")
    if active_keys == 0:
        raise ExposureRefused(f"refusing to serve on {host} without API keys: create one with "
                              "`handwerk keys create`, or set HANDWERK_ALLOW_OPEN=1 if an open "
                              "API there is intended")
    return AuthMode.REQUIRED


async def guard_exposure(settings: Settings, host: str) -> Settings:
    """The settings a server bound to ``host`` runs with (``auth_mode`` ``required`` beyond
    loopback), or ``ExposureRefused``. Counts keys in the database only when it matters."""
    active = 0
    exposed = not (is_loopback(host) or settings.access.allow_open)
    if exposed and AuthMode(settings.access.mode) is not AuthMode.OFF:
        async with open_key_store(settings.resolved_database_url) as keys:
            active = await keys.count_active()
    mode = exposure_mode(settings, host, active)
    if mode == AuthMode(settings.access.mode):
        return settings
    return settings.model_copy(update={"access": settings.access.model_copy(update={"mode": mode.value})})
