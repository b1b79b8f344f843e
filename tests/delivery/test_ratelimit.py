"""The provider-wide rate limit and the 429 backoff, shared through the cache by every worker."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest

from delivery import ratelimit
from delivery.ratelimit import (
    ProviderRateLimiter,
    provider_backoff_clear,
    provider_backoff_set,
    provider_backoff_until,
)
from tests.delivery.test_sending import NOW, engine_settings
from tests.services import REDIS_URL, require_redis

__all__ = ["engine_settings"]  # the autouse fixture (a private LocMem cache per test)

UTC = dt.UTC


def test_a_window_grants_its_capacity_and_no_more() -> None:
    limiter = ProviderRateLimiter(rate=100, window=2)
    assert limiter.capacity == 200
    assert limiter.acquire(150, now=NOW) == 150
    assert limiter.acquire(150, now=NOW + dt.timedelta(seconds=1)) == 50  # same window
    assert limiter.acquire(1, now=NOW) == 0
    assert limiter.used(now=NOW) == 200  # the refused part was given back at once
    assert limiter.acquire(500, now=NOW + dt.timedelta(seconds=2)) == 200  # the next window


def test_unused_tokens_can_be_given_back() -> None:
    limiter = ProviderRateLimiter(rate=10, window=1)
    assert limiter.acquire(10, now=NOW) == 10
    limiter.release(4, now=NOW)  # claimed only 6 rows
    assert limiter.acquire(10, now=NOW) == 4
    limiter.release(3, now=NOW - dt.timedelta(hours=1))  # an expired window: ignored


def test_settings_define_the_rate_and_the_window(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_PROVIDER_RATE = 250.0
    engine_settings.NOTIFYHUB_DISPATCH_SECONDS = 2.0
    assert ProviderRateLimiter.from_settings().capacity == 500
    engine_settings.NOTIFYHUB_DISPATCH_SECONDS = 0.2  # never shorter than a second
    assert ProviderRateLimiter.from_settings().window == 1.0
    assert ProviderRateLimiter(rate=0.1, window=1).capacity == 1  # a tiny rate still moves


def _hammer(limiter: ProviderRateLimiter, workers: int, chunk: int) -> list[int]:
    """``workers`` threads take ``chunk`` tokens at a time until refused; their grants."""
    barrier = threading.Barrier(workers)
    grants: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait(timeout=10)
        while granted := limiter.acquire(chunk, now=NOW):
            with lock:
                grants.append(granted)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return grants


def test_two_workers_share_one_budget() -> None:
    limiter = ProviderRateLimiter(rate=1000, window=1)
    grants = _hammer(limiter, workers=2, chunk=7)
    assert sum(grants) == 1000


@pytest.mark.integration
def test_workers_share_one_budget_through_redis(engine_settings: Any) -> None:
    require_redis()
    engine_settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"test-ratelimit-{uuid.uuid4().hex}",
        }
    }
    limiter = ProviderRateLimiter(rate=3000, window=1, name=f"redis-{uuid.uuid4().hex}")
    grants = _hammer(limiter, workers=4, chunk=13)
    assert sum(grants) == 3000
    assert limiter.used(now=NOW) == 3000


def test_backoff_only_moves_later_and_can_be_lifted() -> None:
    assert provider_backoff_until() is None
    assert provider_backoff_set(until=NOW + dt.timedelta(seconds=30)) == NOW + dt.timedelta(seconds=30)
    assert provider_backoff_set(until=NOW + dt.timedelta(seconds=10)) == NOW + dt.timedelta(seconds=30)
    provider_backoff_set(until=NOW + dt.timedelta(seconds=90))
    assert provider_backoff_until() == NOW + dt.timedelta(seconds=90)
    provider_backoff_clear()
    assert provider_backoff_until() is None


def test_a_cache_outage_claims_nothing_and_assumes_no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("redis is restarting")

            return fail

    monkeypatch.setattr(ratelimit, "_cache", Down)
    limiter = ProviderRateLimiter(rate=100, window=1)
    assert limiter.acquire(10, now=NOW) == 0
    limiter.release(10, now=NOW)
    assert limiter.used(now=NOW) == 0
    assert provider_backoff_until() is None
    provider_backoff_set(until=NOW)  # logged, not raised
