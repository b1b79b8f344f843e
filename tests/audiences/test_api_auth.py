"""API keys: stored hashed, 401/403/429, last_used_at written cheaply, rate limits atomic on Redis."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from typing import Any

import pytest
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from django.utils import timezone

from audiences.models import ApiKey, Subscriber
from audiences.services import api_keys
from audiences.services.api_keys import (
    ApiKeyError,
    ApiKeyRevoked,
    api_key_authenticate,
    api_key_check_rate,
    api_key_create,
    api_key_revoke,
    api_key_touch,
)
from tests.factories import SubscriberFactory
from tests.services import require_redis

pytestmark = pytest.mark.django_db

PREF_URL = "/api/v1/preference-url?external_id=ana"


def test_only_the_hash_and_a_prefix_are_stored() -> None:
    created = api_key_create(name="iOS app", rate_limit_per_minute=100)
    key = ApiKey.objects.get()
    assert created.plaintext.startswith(f"{key.prefix}_")
    assert key.prefix.startswith("nh_") and len(key.prefix) == 11
    assert key.key_hash == hashlib.sha256(created.plaintext.encode()).hexdigest()
    stored = json.dumps(list(ApiKey.objects.values()), default=str)
    assert created.plaintext not in stored
    assert created.plaintext.split("_", 2)[2] not in stored
    assert key.rate_limit_per_minute == 100
    assert api_key_authenticate(plaintext=created.plaintext) == key
    assert api_key_create(name="other").plaintext != created.plaintext


def test_create_refuses_what_a_marketer_must_fix() -> None:
    with pytest.raises(ApiKeyError, match="Give the key a name"):
        api_key_create(name="  ")
    with pytest.raises(ApiKeyError, match="at least 1"):
        api_key_create(name="x", rate_limit_per_minute=0)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nh_00000000_wrong", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "nh_abc"],
)
def test_missing_or_unknown_keys_get_401(header: str | None) -> None:
    SubscriberFactory(external_id="ana")
    api_key_create(name="real")
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get(PREF_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <key>" in response.json()["detail"]


def test_a_revoked_key_gets_403_and_revoking_twice_changes_nothing() -> None:
    SubscriberFactory(external_id="ana")
    created = api_key_create(name="old app")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    assert client.get(PREF_URL).status_code == 200

    assert api_key_revoke(api_key=created.api_key) is True
    revoked_at = created.api_key.revoked_at
    assert api_key_revoke(api_key=created.api_key) is False
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at == revoked_at

    response = client.get(PREF_URL)
    assert response.status_code == 403
    assert "was revoked" in response.json()["detail"] and created.api_key.prefix in response.json()["detail"]
    with pytest.raises(ApiKeyRevoked):
        api_key_authenticate(plaintext=created.plaintext)


def test_last_used_at_is_written_at_most_once_a_minute(django_assert_num_queries: Any) -> None:
    created = api_key_create(name="app")
    key = created.api_key
    assert key.last_used_at is None
    with django_assert_num_queries(2):  # lookup + the first touch
        first = api_key_authenticate(plaintext=created.plaintext)
    assert first is not None and first.last_used_at is not None
    stamped = ApiKey.objects.get().last_used_at
    with django_assert_num_queries(1):  # lookup only: used seconds ago
        api_key_authenticate(plaintext=created.plaintext)
    assert ApiKey.objects.get().last_used_at == stamped

    assert stamped is not None
    later = stamped + dt.timedelta(seconds=61)
    assert api_key_touch(api_key=ApiKey.objects.get(), now=later) is True
    assert ApiKey.objects.get().last_used_at == later


def test_over_the_rate_the_api_answers_429_with_retry_after() -> None:
    SubscriberFactory(external_id="ana")
    created = api_key_create(name="chatty", rate_limit_per_minute=3)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    assert [client.get(PREF_URL).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get(PREF_URL)
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "3 requests a minute" in limited.json()["detail"]
    # Another key has its own budget.
    other = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='other').plaintext}")
    assert other.get(PREF_URL).status_code == 200


def test_the_window_resets_each_minute() -> None:
    key = api_key_create(name="x", rate_limit_per_minute=1).api_key
    t0 = 1_800_000_000.0  # a window boundary (divisible by 60)
    assert api_key_check_rate(api_key=key, now=t0 + 10).allowed
    blocked = api_key_check_rate(api_key=key, now=t0 + 50)
    assert (blocked.allowed, blocked.retry_after) == (False, 10)
    assert api_key_check_rate(api_key=key, now=t0 + 61).allowed


def test_rate_counting_is_atomic_on_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production's cache: concurrent workers never lose a count (SET NX + INCRBY)."""
    redis_cache = RedisCache(require_redis(), {})
    monkeypatch.setattr(api_keys, "cache", redis_cache)
    key = api_key_create(name="busy", rate_limit_per_minute=10_000).api_key
    now = 1_800_000_030.0
    counter = f"nh:api-rate:{key.prefix}:{int(now // 60)}"
    redis_cache.delete(counter)
    remaining: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(50):
            decision = api_key_check_rate(api_key=key, now=now)
            with lock:
                remaining.append(decision.remaining)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        # 400 requests: every count from 1 to 400 was handed out exactly once.
        assert sorted(remaining) == sorted(10_000 - n for n in range(1, 401))
        assert redis_cache.get(counter) == 400
    finally:
        redis_cache.delete(counter)
        redis_cache.close()


def test_the_key_is_recorded_as_the_consent_source() -> None:
    created = api_key_create(name="Android app")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}", HTTP_USER_AGENT="AndroidApp/5")
    response = client.post(
        "/api/v1/identify",
        json.dumps({"external_id": "ana", "push_opt_in": True}),
        content_type="application/json",
    )
    assert response.status_code == 201
    record = Subscriber.objects.get(external_id="ana").consent_records.get()
    assert record.source == "api"
    assert record.source_detail == f"API key {created.api_key.prefix}… (Android app)"
    assert record.user_agent_hash and "AndroidApp" not in record.user_agent_hash
    assert timezone.now() - record.created_at < dt.timedelta(minutes=1)
