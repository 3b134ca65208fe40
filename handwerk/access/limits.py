"""Request rate limits: a token bucket per client (an API key, or the client address where
the API runs open). Over the limit a request is refused at once with the seconds after which
it would be admitted (HTTP 429 + Retry-After), rather than queued.

Buckets live in the process: two API processes behind one balancer admit twice a key's rate.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable


def client_bucket(host: str | None) -> str:
    """The bucket id of a client address. IPv6 clients count per /64, the block one host
    usually gets (it can pick any address in it); IPv4 per address."""
    if not host:
        return "ip:unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"ip:{host}"  # not an address (a test client's name, a unix socket)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"
    return f"ip:{address}"


class RateLimited(Exception):
    """Too many requests from one client; retry after ``retry_after_s`` (whole seconds)."""

    def __init__(self, rate_per_s: float, wait_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(wait_s))
        super().__init__(f"rate limit of {rate_per_s:g} requests/s exceeded, "
                         f"retry in {self.retry_after_s} s")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; a request takes one."""

    __slots__ = ("rate_per_s", "burst", "tokens", "updated")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class RateLimiter:
    """One bucket per client id, at most ``max_clients`` of them (least recently seen go
    first), so a flood of client addresses cannot grow memory without bound.

    ``rate_per_s`` is the default (0: no limit); a key may carry its own rate."""

    def __init__(self, rate_per_s: float, burst: int = 0, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self._burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def burst_for(self, rate_per_s: float) -> float:
        """The configured burst, else two seconds' worth (at least one request)."""
        return float(self._burst) if self._burst > 0 else max(1.0, 2 * rate_per_s)

    def check(self, client: str, rate_per_s: float | None = None) -> None:
        """Admit one request of ``client`` or raise ``RateLimited``."""
        rate = self.rate_per_s if rate_per_s is None else rate_per_s
        if rate <= 0:
            return
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None or bucket.rate_per_s != rate:
            bucket = self._buckets[client] = TokenBucket(rate, self.burst_for(rate), now)
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(client)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(rate, wait)

    def take(self, client: str) -> bool:
        """Take one request of ``client`` if its bucket admits it (True), else take nothing
        (False): for a cost that is given back (``give_back``) if it turns out not to count."""
        try:
            self.check(client)
        except RateLimited:
            return False
        return True

    def give_back(self, client: str) -> None:
        """Return the request ``take`` took (a bucket never holds more than its burst)."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.tokens = min(bucket.burst, bucket.tokens + 1)
