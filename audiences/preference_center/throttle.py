"""Too many bad preference links from one address → 429.

Counts, per client address, the requests whose token did not resolve to a live
subscriber (tampered, truncated, expired, unknown, erased) in the Django cache — the
store every web process shares (Redis in production, the file cache in the embedded
setup). Fixed windows of ``NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW`` seconds, one key
per address and window (``cache.add`` then ``cache.incr``, as in
``delivery.ratelimit``); once an address has had ``NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT``
bad tokens in the current window, every preference-center request from it gets a
429 until the window ends — valid links too, so a blocked scanner learns nothing.

Reading the counter costs a round trip to the cache on every request, so each process
remembers for ``NOT_BLOCKED_MEMO_SECONDS`` (one second, within the window) that an
address was not blocked. Bad tokens are always counted in the cache, and the count
the cache returns decides their answer, so they get the 429 exactly when they would
have without the memo; only a *valid* link opened from an address that another
process blocked less than a second ago may still be shown. A link is only valid if
it was handed out, so that second teaches a scanner nothing.

The address is ``REMOTE_ADDR``: behind a reverse proxy, the proxy must hand the real
client address to the app, or every user shares the proxy's counter. Addresses are
hashed in the key (no raw IPs in the cache, and keys safe for any backend). If the
cache is unreachable the throttle fails open: the page must keep working, and the
signature check is what protects the links.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest

logger = logging.getLogger(__name__)

KEY_PREFIX = "notifyhub:preferences:bad-token"
DEFAULT_LIMIT = 20
DEFAULT_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: int
    index: int
    retry_after: int


def _cache() -> BaseCache:
    return caches["default"]


def _window(now: float | None = None) -> Window:
    # Read at call time (not import time) so tests and deployments can change them.
    limit = int(getattr(settings, "NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT", DEFAULT_LIMIT))
    seconds = max(1, int(getattr(settings, "NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW", DEFAULT_WINDOW_SECONDS)))
    now = time.time() if now is None else now
    index = int(now // seconds)
    return Window(
        limit=limit, seconds=seconds, index=index, retry_after=max(1, (index + 1) * seconds - int(now))
    )


def client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _key(address: str, window: Window) -> str:
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}:{window.seconds}:{window.index}:{digest}"


# Process-local: cache key → time.time() until which the address is known not blocked.
_not_blocked: dict[str, float] = {}
NOT_BLOCKED_MEMO_SECONDS = 1.0
_MEMO_MAX_ENTRIES = 10_000


def blocked_for(address: str) -> int | None:
    """Seconds until ``address`` may try again, or ``None`` when it is not blocked."""
    now = time.time()
    window = _window(now)
    if window.limit <= 0:
        return None
    key = _key(address, window)
    if _not_blocked.get(key, 0.0) > now:
        return None
    try:
        count = _cache().get(key, 0)
    except Exception:  # the cache backend's own errors (Redis down…): fail open
        logger.warning("preference-center throttle: cache unavailable", exc_info=True)
        return None
    if count >= window.limit:
        return window.retry_after
    if len(_not_blocked) >= _MEMO_MAX_ENTRIES:
        _not_blocked.clear()
    _not_blocked[key] = min(now + NOT_BLOCKED_MEMO_SECONDS, (window.index + 1) * window.seconds)
    return None


def record_bad_token(address: str) -> int | None:
    """Count one bad token for ``address``; the seconds to wait if it was already blocked.

    "Already" means before this token: the request that reaches the limit is still
    answered normally, as :func:`blocked_for` would have let it through.
    """
    window = _window()
    key = _key(address, window)
    _not_blocked.pop(key, None)
    cache = _cache()
    try:
        if cache.add(key, 1, timeout=window.seconds):
            return None
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window.seconds)
            return None
        # BaseCache.incr (file cache) is get + set with the default timeout: keep ours.
        cache.touch(key, timeout=window.seconds)
    except Exception:
        logger.warning("preference-center throttle: cache unavailable", exc_info=True)
        return None
    return window.retry_after if window.limit > 0 and count - 1 >= window.limit else None
