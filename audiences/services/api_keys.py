"""Client API keys: create (shown once), revoke, authenticate, rate-limit.

A key looks like ``nh_1a2b3c4d_<43 random characters>``. Only its SHA-256 hash and
the short prefix (``nh_1a2b3c4d``, to recognise it in the admin) are stored; the
plaintext is returned once by :func:`api_key_create` and never again.

Rate limiting is a fixed one-minute window per key in Django's cache. With Redis
(``CACHE_URL=redis://…``, production) ``add`` is ``SET NX`` and ``incr`` is
``INCRBY``: atomic across every web process and machine. The embedded file cache
(``make run``) implements ``incr`` as read-then-write, so concurrent requests can
undercount a little and the limit is approximate there; it is also per machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audiences.models import ApiKey
from notifyhub.exceptions import ApplicationError

KEY_PREFIX = "nh_"
RATE_WINDOW_SECONDS = 60


class ApiKeyError(ApplicationError):
    """An API key cannot be created or used as asked."""


class ApiKeyRevoked(ApiKeyError):
    """The key exists but was revoked: the client must get a new one (HTTP 403)."""


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    plaintext: str


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_create(
    *, name: str, rate_limit_per_minute: int | None = None, created_by: AbstractBaseUser | None = None
) -> CreatedApiKey:
    """Create a key and return it with its plaintext — the only time the plaintext exists.

    Transaction: one INSERT. Not idempotent by design: every call makes a new key.
    A prefix collision (1 in 4 billion) is retried with a fresh key.
    """
    name = name.strip()
    if not name:
        raise ApiKeyError("Give the key a name, e.g. the app that will use it ('iOS app').")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ApiKeyError("The rate limit must be at least 1 request per minute.")
    for _attempt in range(5):
        prefix = f"{KEY_PREFIX}{secrets.token_hex(4)}"
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        fields: dict[str, object] = {"name": name, "prefix": prefix, "key_hash": _hash(plaintext)}
        if rate_limit_per_minute is not None:
            fields["rate_limit_per_minute"] = rate_limit_per_minute
        if created_by is not None and created_by.pk:
            fields["created_by"] = created_by
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(**fields)
        except IntegrityError:
            continue
        return CreatedApiKey(api_key=api_key, plaintext=plaintext)
    raise ApiKeyError("Could not create a unique key; try again.")  # pragma: no cover


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revoke a key: from now on it answers 403.

    Idempotent: a conditional UPDATE (``WHERE revoked_at IS NULL``); revoking an already
    revoked key changes nothing and returns False. ``api_key`` is refreshed in place.
    """
    now = timezone.now()
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return bool(changed)


def api_key_authenticate(*, plaintext: str) -> ApiKey | None:
    """The active key for ``plaintext``, None when unknown; raises ApiKeyRevoked if revoked.

    The lookup is by the SHA-256 of the presented key (an indexed, unique column), so
    the database never compares secrets; the final ``compare_digest`` keeps the check
    constant-time in Python too. Marks the key used (at most once a minute, see
    :func:`api_key_touch`).
    """
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
        return None
    digest = _hash(plaintext)
    api_key = ApiKey.objects.filter(key_hash=digest).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    if api_key.revoked_at is not None:
        raise ApiKeyRevoked(
            f"The API key {api_key.prefix}… was revoked on {api_key.revoked_at:%Y-%m-%d}; "
            "ask an administrator for a new key."
        )
    api_key_touch(api_key=api_key)
    return api_key


def api_key_touch(*, api_key: ApiKey, now: dt.datetime | None = None) -> bool:
    """Record that the key was used, at most once per NOTIFYHUB_API_KEY_TOUCH_SECONDS.

    A conditional UPDATE (``WHERE last_used_at IS NULL OR last_used_at < now - N``):
    most requests skip it in Python, and concurrent workers race harmlessly.
    """
    now = now or timezone.now()
    stale_before = now - dt.timedelta(seconds=settings.NOTIFYHUB_API_KEY_TOUCH_SECONDS)
    if api_key.last_used_at is not None and api_key.last_used_at >= stale_before:
        return False
    changed = ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before), pk=api_key.pk
    ).update(last_used_at=now)
    api_key.last_used_at = now
    return bool(changed)


def api_key_check_rate(*, api_key: ApiKey, now: float | None = None) -> RateDecision:
    """Count one request against the key's per-minute limit.

    Fixed window: the counter ``nh:api-rate:<prefix>:<minute>`` is created with ``add``
    (atomic "set if absent") and bumped with ``incr`` (atomic on Redis). The prefix,
    not the id, names the counter, so a deleted and re-created row never inherits one.
    """
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_SECONDS)
    key = f"nh:api-rate:{api_key.prefix}:{window}"
    limit = api_key.rate_limit_per_minute
    cache.add(key, 0, timeout=RATE_WINDOW_SECONDS + 5)
    try:
        count = cache.incr(key)
    except ValueError:
        # The counter expired between add and incr (window boundary): start afresh.
        cache.add(key, 1, timeout=RATE_WINDOW_SECONDS + 5)
        count = 1
    retry_after = max(1, int((window + 1) * RATE_WINDOW_SECONDS - now + 0.999))
    return RateDecision(
        allowed=count <= limit, limit=limit, remaining=max(0, limit - count), retry_after=retry_after
    )
