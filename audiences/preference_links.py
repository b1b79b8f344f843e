"""Signed preference-center links: ``/preferences/<token>/``.

The token is a ``django.core.signing`` token (HMAC with ``SECRET_KEY``, its own salt)
naming one subscriber, with a timestamp checked against
``settings.NOTIFYHUB_PREFERENCE_LINK_MAX_AGE``. It carries the subscriber's primary
key only — no personal data — and anyone holding the link can open that subscriber's
preference center, so it is handed out over the authenticated API (or in a push) and
expires. The page itself arrives with issue #6.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core import signing
from django.utils import timezone

from audiences.models import Subscriber
from notifyhub.exceptions import ApplicationError

SALT = "notifyhub.audiences.preference-link.v1"


class PreferenceLinkError(ApplicationError):
    """The link was tampered with or has expired."""


def make_token(*, subscriber: Subscriber) -> str:
    """A URL-safe signed token for ``subscriber`` (pure: no database access)."""
    return signing.dumps({"s": subscriber.pk}, salt=SALT, compress=False)


def verify_token(*, token: str, max_age: int | None = None) -> int:
    """The subscriber id in ``token``; raises PreferenceLinkError if tampered or expired."""
    age = settings.NOTIFYHUB_PREFERENCE_LINK_MAX_AGE if max_age is None else max_age
    try:
        payload = signing.loads(token, salt=SALT, max_age=age)
    except signing.SignatureExpired as exc:
        raise PreferenceLinkError(
            "This preference link has expired; open the newest one from the app."
        ) from exc
    except signing.BadSignature as exc:
        raise PreferenceLinkError("This preference link is not valid.") from exc
    subscriber_id = payload.get("s") if isinstance(payload, dict) else None
    if not isinstance(subscriber_id, int):
        raise PreferenceLinkError("This preference link is not valid.")
    return subscriber_id


def preference_path(*, token: str) -> str:
    """The site-relative path of the preference center for ``token``.

    Spelled out rather than reversed: the view (and its URL name) arrive with issue #6,
    and this path is a public interface that must not move (DESIGN.md).
    """
    return f"/preferences/{token}/"


def expires_at(*, issued_at: dt.datetime | None = None) -> dt.datetime:
    issued_at = issued_at or timezone.now()
    return issued_at + dt.timedelta(seconds=settings.NOTIFYHUB_PREFERENCE_LINK_MAX_AGE)


def preference_url(*, subscriber_id: int) -> str:
    """The absolute preference-center URL of a subscriber (``NOTIFYHUB_PUBLIC_URL`` + path).

    For push messages, built per message without loading the subscriber: the token
    is the one :func:`make_token` gives for that subscriber (pure: no database access).
    """
    token = signing.dumps({"s": subscriber_id}, salt=SALT, compress=False)
    return settings.NOTIFYHUB_PUBLIC_URL.rstrip("/") + preference_path(token=token)
