"""The provider-wide send rate and the provider's "not before" backoff, shared by all workers.

Both live in the Django cache (``CACHES["default"]``), the one store every worker and
beat process on every machine shares: Redis in production (``CACHE_URL``), a file
cache under ``var/`` for the embedded setup.

**Rate** (``ProviderRateLimiter``): fixed windows of ``window`` seconds, each holding
``rate * window`` tokens, counted by one cache key per window (``cache.add`` to
create it, then ``cache.incr``). ``dispatch_due`` takes a token for every row it
claims, so however many dispatchers run, at most ``rate * window`` messages are
claimed per window. A caller that gets fewer tokens than it asked for gives the rest
back at once (``cache.decr``), and so does one that claims fewer rows than it was
granted; each caller's net contribution is what it uses, which is why the sum of
grants in a window never exceeds its capacity (a caller sees the counter *after*
everyone before it added their request, so it can only be granted less, never more).
Like every fixed window, two windows' worth can go out around a boundary; FCM's quota
is per minute (600,000 per project), so that never matters at a per-second budget.

Atomicity: on Redis ``INCR``/``DECRBY`` are atomic server-side, so the bound above
holds across any number of processes and machines. On LocMem it holds across the
threads of one process (Django locks it). On the **file cache** — the development
default — ``incr`` is a read-modify-write: two processes taking tokens in the same
instant can both be granted, so the limit is best-effort there (one machine, one
worker: the embedded setup). Production must set ``CACHE_URL`` to Redis.

**Backoff** (``provider_backoff_*``): after a 429, the provider's ``Retry-After``
becomes a "not before" instant under one key; dispatch claims nothing and
``send_batch`` sends nothing before it. Writers only ever move it later.

If the cache is unreachable (Redis restarting), the limiter grants nothing and the
backoff reads as "none": dispatch pauses until the cache is back, and nothing is lost
because due work is rows in the database.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

logger = logging.getLogger(__name__)

KEY_PREFIX = "notifyhub:provider"
BACKOFF_KEY = f"{KEY_PREFIX}:not-before"
# How long a stored backoff may live at most (a Retry-After is seconds to minutes).
MAX_BACKOFF_SECONDS = 24 * 3600.0


def _cache() -> BaseCache:
    return caches["default"]


@dataclass(frozen=True)
class ProviderRateLimiter:
    """At most ``rate`` messages a second on average, as ``rate * window`` per window."""

    rate: float
    window: float
    name: str = "send"

    @classmethod
    def from_settings(cls) -> ProviderRateLimiter:
        """``NOTIFYHUB_PROVIDER_RATE`` per second, windows as long as one dispatch interval.

        Read at call time (``override_settings`` and each worker's environment apply).
        A window shorter than the dispatch interval would waste budget between ticks.
        """
        return cls(
            rate=float(settings.NOTIFYHUB_PROVIDER_RATE),
            window=max(1.0, float(settings.NOTIFYHUB_DISPATCH_SECONDS)),
        )

    @property
    def capacity(self) -> int:
        """Tokens per window (at least one, so a tiny rate still makes progress)."""
        return max(1, math.floor(self.rate * self.window))

    def _key(self, now: dt.datetime) -> str:
        return f"{KEY_PREFIX}:{self.name}:{math.floor(now.timestamp() / self.window)}"

    def acquire(self, n: int, *, now: dt.datetime) -> int:
        """Take up to ``n`` tokens from the window containing ``now``; return how many.

        Never more than the window has left; 0 when it is spent (or the cache is down).
        """
        if n <= 0:
            return 0
        key = self._key(now)
        cache = _cache()
        # Kept two windows (at least a minute): the key is never read after its window.
        timeout = max(60, math.ceil(self.window * 2))
        try:
            cache.add(key, 0, timeout=timeout)
            try:
                total = int(cache.incr(key, n))
            except ValueError:  # expired between add and incr
                cache.add(key, 0, timeout=timeout)
                total = int(cache.incr(key, n))
        except Exception:  # the cache is down: grant nothing, dispatch again later
            logger.warning("provider rate limit: cache unavailable; claiming nothing", exc_info=True)
            return 0
        granted = max(0, min(n, self.capacity - (total - n)))
        if granted < n:
            self.release(n - granted, now=now)
        return granted

    def release(self, n: int, *, now: dt.datetime) -> None:
        """Give back ``n`` tokens of the window containing ``now`` (unused ones)."""
        if n <= 0:
            return
        try:
            _cache().decr(self._key(now), n)
        except ValueError:  # the window's key expired: nothing to give back
            pass
        except Exception:
            logger.warning("provider rate limit: cache unavailable; tokens not returned", exc_info=True)

    def used(self, *, now: dt.datetime) -> int:
        """Tokens taken in the window containing ``now`` (for tests and the admin)."""
        try:
            return int(_cache().get(self._key(now)) or 0)
        except Exception:
            return 0


def provider_backoff_until() -> dt.datetime | None:
    """The instant before which nothing may be sent to the provider, or None."""
    try:
        value = _cache().get(BACKOFF_KEY)
    except Exception:
        logger.warning("provider backoff: cache unavailable; assuming none", exc_info=True)
        return None
    if value is None:
        return None
    return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)


def provider_backoff_set(*, until: dt.datetime) -> dt.datetime:
    """Forbid requests to the provider before ``until``; returns the instant in force.

    Only ever moves the instant later (two workers reporting 429s keep the later one).
    Not atomic across processes (get, then set): two concurrent writers can leave the
    earlier of two close instants, which the next 429 corrects.
    """
    current = provider_backoff_until()
    if current is not None and current >= until:
        return current
    # Expires a minute after it stops mattering (in real time; tests pass a fixed "now").
    seconds = min(MAX_BACKOFF_SECONDS, max(1.0, (until - dt.datetime.now(tz=dt.UTC)).total_seconds()))
    try:
        _cache().set(BACKOFF_KEY, until.timestamp(), timeout=math.ceil(seconds) + 60)
    except Exception:
        logger.warning("provider backoff: cache unavailable; not stored", exc_info=True)
    return until


def provider_backoff_clear() -> None:
    """Lift the backoff (tests, or an operator after fixing a quota)."""
    try:
        _cache().delete(BACKOFF_KEY)
    except Exception:
        logger.warning("provider backoff: cache unavailable; not cleared", exc_info=True)
