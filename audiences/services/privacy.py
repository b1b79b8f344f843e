"""One person's data: download it (``subscriber_export``) and erase it (``subscriber_erase``).

Both serve the preference center's "Download my data" / "Erase my data" and the same
admin actions. Other apps hold data about a subscriber too (delivery's ledger and
outbox), but audiences must not import them (dependency direction ``audiences ←
campaigns ← delivery``): they register an export section and/or an erase hook here,
from their ``AppConfig.ready()`` (see ``delivery/privacy.py``).

Erasure keeps a minimal **suppression record**: the subscriber row stays (the consent
ledger references it and is never deleted) with every personal field blanked,
``push_opt_in`` off, ``erased_at`` set and ``external_id`` replaced by a keyed,
non-reversible hash of the old one. Nothing selects erased subscribers (segments,
campaign audiences, send-time suppression all check ``erased_at``), and
:func:`external_id_is_erased` recognises the old external id if the client app
identifies the same person again — which is refused (:class:`SubscriberErased`),
so the person is never stored nor messaged again under that id.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Case, CharField, F, Field, Value, When
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone
from django.utils.crypto import salted_hmac

from audiences.models import (
    ConsentRecord,
    Device,
    Event,
    SegmentMember,
    Subscriber,
    Topic,
    TopicPreference,
)
from audiences.services.preferences import ConsentContext
from notifyhub.exceptions import ApplicationError

EXPORT_FORMAT: Final = "notifyhub.subscriber-export"
EXPORT_VERSION: Final = 1
ERASED_PREFIX: Final = "erased:"
# Ledger field of the final record an erasure appends (beside "push_opt_in", "topic"…).
ERASED_FIELD: Final = "erased"
_ERASED_ID_SALT: Final = "notifyhub.audiences.erased-external-id.v1"

# Reset to the model default on erasure: everything that says something about the person.
ERASED_FIELDS: Final = (
    "email",
    "first_name",
    "last_name",
    "language",
    "timezone",
    "country",
    "city",
    "interests",
    "attributes",
    "last_seen_at",
    "sessions_30d",
    "purchase_count",
    "total_spent",
    "last_purchase_at",
    "frequency_limit",
    "quiet_hours_start",
    "quiet_hours_end",
    "paused_until",
)


class SubscriberErased(ApplicationError):
    """The person behind this external id erased their data; they are not stored again."""


class ExportSection(Protocol):
    """Another app's part of an export: JSON-serializable, at most ``limit`` recent rows."""

    def __call__(self, *, subscriber: Subscriber, limit: int) -> Any: ...


class EraseHook(Protocol):
    """Another app's part of an erasure; runs inside ``subscriber_erase``'s transaction."""

    def __call__(self, *, subscriber: Subscriber) -> None: ...


_CORE_SECTIONS: Final = frozenset(
    {"format", "subscriber", "topic_preferences", "devices", "consent_records", "events"}
)
_export_sections: dict[str, ExportSection] = {}
_erase_hooks: dict[str, EraseHook] = {}


def register_export_section(name: str, section: ExportSection) -> None:
    """Add ``section`` to every export under the key ``name``.

    Call it from ``AppConfig.ready()``. Registering the same name again replaces the
    earlier callable, so a repeated ``ready()`` (tests) is harmless.
    """
    if name in _CORE_SECTIONS:
        raise ValueError(f"{name!r} is a section of the audiences app itself.")
    _export_sections[name] = section


def register_erase_hook(name: str, hook: EraseHook) -> None:
    """Run ``hook`` in every erasure (same transaction, before the devices are anonymized).

    Call it from ``AppConfig.ready()``; the same name again replaces the earlier hook.
    """
    _erase_hooks[name] = hook


def erased_external_id(external_id: str, *, secret: str | bytes | None = None) -> str:
    """The suppression marker stored in place of ``external_id`` (keyed SHA-256, hex)."""
    digest = salted_hmac(_ERASED_ID_SALT, external_id, secret=secret, algorithm="sha256").hexdigest()
    return f"{ERASED_PREFIX}{digest}"


def external_ids_erased(*, external_ids: Iterable[str]) -> set[str]:
    """Which of ``external_ids`` belong to erased people (set-based: for imports too).

    Checks the markers under ``SECRET_KEY`` and every ``SECRET_KEY_FALLBACKS`` key, so
    rotating the key keeps erased people suppressed while the old key is a fallback.
    One indexed query per 5,000 markers.
    """
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    by_marker = {
        erased_external_id(external_id, secret=secret): external_id
        for external_id in dict.fromkeys(external_ids)
        for secret in secrets
    }
    markers = list(by_marker)
    found: set[str] = set()
    for start in range(0, len(markers), 5000):
        found.update(
            by_marker[marker]
            for marker in Subscriber.objects.filter(
                external_id__in=markers[start : start + 5000], erased_at__isnull=False
            ).values_list("external_id", flat=True)
        )
    return found


def external_id_is_erased(*, external_id: str) -> bool:
    """Whether a subscriber with this external id was erased (one indexed query)."""
    return bool(external_ids_erased(external_ids=[external_id]))


def subscriber_ensure_not_erased(*, external_id: str) -> None:
    """Raise :class:`SubscriberErased` if ``external_id`` belongs to an erased person.

    For ``subscriber_identify`` before it creates a subscriber: without it, a client
    app identifying the same user again would re-create them (and message them).
    """
    if external_id_is_erased(external_id=external_id):
        raise SubscriberErased(
            "This user erased their data: NotifyHub keeps no data about them and does not "
            "store or message them again under this external id."
        )


# --- Download ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready: ISO 8601 times, decimals as strings, containers recursively."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def subscriber_export(
    *, subscriber: Subscriber, recent_deliveries: int = 200, recent_events: int = 200
) -> dict[str, Any]:
    """Everything NotifyHub holds about one subscriber, as a JSON-serializable dict.

    Sections: ``subscriber`` (profile, custom attributes, interests, behaviour
    aggregates, preferences), ``topic_preferences`` (every active topic with the
    effective choice, plus explicit choices on inactive topics), ``devices`` (full
    push tokens: the export goes to the person or to staff who already see them),
    ``consent_records`` (all, oldest first; the staff account behind an admin change
    is left out — that is someone else's data), ``events`` (the newest
    ``recent_events``) and one section per registered app (``deliveries``: the newest
    ``recent_deliveries``).

    Read-only, no transaction: a fixed number of queries (one per section) whatever
    the amount of data; a change landing meanwhile may show in one section only.
    """
    s = Subscriber.objects.get(pk=subscriber.pk)
    topics = list(Topic.objects.filter(is_active=True))
    chosen = {p.topic_id: p for p in TopicPreference.objects.filter(subscriber=s).select_related("topic")}
    shown = topics + [p.topic for p in chosen.values() if not p.topic.is_active]
    quiet = (
        {"start": s.quiet_hours_start, "end": s.quiet_hours_end}
        if s.quiet_hours_start is not None and s.quiet_hours_end is not None
        else None
    )
    data: dict[str, Any] = {
        "format": {
            "name": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "generated_at": timezone.now(),
            "recent_events": recent_events,
            "recent_deliveries": recent_deliveries,
        },
        "subscriber": {
            "external_id": s.external_id,
            "email": s.email,
            "first_name": s.first_name,
            "last_name": s.last_name,
            "language": s.language,
            "timezone": s.timezone,
            "country": s.country,
            "city": s.city,
            "interests": s.interests,
            "attributes": s.attributes,
            "behaviour": {
                "last_seen_at": s.last_seen_at,
                "sessions_30d": s.sessions_30d,
                "purchase_count": s.purchase_count,
                "total_spent": s.total_spent,
                "last_purchase_at": s.last_purchase_at,
            },
            "preferences": {
                "push_opt_in": s.push_opt_in,
                "frequency_limit": s.frequency_limit,
                "quiet_hours": quiet,
                "paused_until": s.paused_until,
                "language": s.language,
            },
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "erased_at": s.erased_at,
        },
        "topic_preferences": [
            {
                "topic": topic.slug,
                "name": topic.name,
                "opted_in": chosen[topic.pk].opted_in if topic.pk in chosen else topic.default_opt_in,
                "chosen": topic.pk in chosen,
                "updated_at": chosen[topic.pk].updated_at if topic.pk in chosen else None,
            }
            for topic in shown
        ],
        "devices": [
            {
                "platform": d.platform,
                "token": d.token,
                "is_active": d.is_active,
                "invalidated_at": d.invalidated_at,
                "invalidation_reason": d.invalidation_reason,
                "app_version": d.app_version,
                "locale": d.locale,
                "last_seen_at": d.last_seen_at,
                "created_at": d.created_at,
            }
            for d in Device.objects.filter(subscriber=s).order_by("created_at", "id")
        ],
        "consent_records": [
            {
                "at": r.created_at,
                "field": r.field,
                "topic": r.topic.slug if r.topic is not None else None,
                "old_value": r.old_value,
                "new_value": r.new_value,
                "source": r.source,
                "source_detail": r.source_detail,
                "ip_hash": r.ip_hash,
                "user_agent_hash": r.user_agent_hash,
            }
            for r in ConsentRecord.objects.filter(subscriber=s)
            .select_related("topic")
            .order_by("created_at", "id")
        ],
        "events": [
            {
                "name": e.name,
                "properties": e.properties,
                "occurred_at": e.occurred_at,
                "received_at": e.received_at,
                "idempotency_key": e.idempotency_key,
            }
            for e in Event.objects.filter(subscriber=s).order_by("-occurred_at", "-id")[:recent_events]
        ],
    }
    for name, section in _export_sections.items():
        data[name] = section(subscriber=s, limit=recent_deliveries)
    plain: dict[str, Any] = _plain(data)
    return plain


# --- Erase ---------------------------------------------------------------------------


@transaction.atomic
def subscriber_erase(*, subscriber: Subscriber, context: ConsentContext) -> None:
    """Remove a subscriber's personal data and device tokens; keep a suppression record.

    In one transaction, with the subscriber row locked (``SELECT … FOR UPDATE``):
    registered erase hooks run (delivery deletes the rendered outbox messages); events,
    topic choices and static-segment memberships are deleted; every device is
    deactivated (reason ``erased``) and its token, app version and locale are
    overwritten — the rows stay, so the delivery ledger and campaign statistics keep
    their counts, now pointing at no one; every personal field of the subscriber is
    reset, ``push_opt_in`` turned off, ``erased_at`` set and ``external_id`` replaced
    by :func:`erased_external_id`; admin history entries stop naming the person. The
    consent ledger is kept (append-only) and gets a ``push_opt_in`` → False record if
    it was on, then a final ``erased`` record, both with ``context``.

    Idempotent: erasing an erased subscriber changes and writes nothing. Takes effect
    for sending at once: ``send_batch`` re-checks ``erased_at`` for every row it sends.
    ``subscriber`` is refreshed in place.
    """
    locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    if locked.erased_at is None:
        _erase(locked, context)
    for f in Subscriber._meta.concrete_fields:
        setattr(subscriber, f.attname, getattr(locked, f.attname))


def _erase(locked: Subscriber, context: ConsentContext) -> None:
    now = timezone.now()
    base = context.record_kwargs()
    records = []
    if locked.push_opt_in:
        records.append(
            ConsentRecord(subscriber=locked, field="push_opt_in", old_value=True, new_value=False, **base)
        )
    records.append(
        ConsentRecord(
            subscriber=locked, field=ERASED_FIELD, old_value=None, new_value=now.isoformat(), **base
        )
    )

    for hook in _erase_hooks.values():
        hook(subscriber=locked)
    Event.objects.filter(subscriber=locked).delete()
    TopicPreference.objects.filter(subscriber=locked).delete()
    SegmentMember.objects.filter(subscriber=locked).delete()
    device_ids = [str(pk) for pk in Device.objects.filter(subscriber=locked).values_list("pk", flat=True)]
    if device_ids:
        Device.objects.filter(subscriber=locked).update(
            # Unique and meaningless; real FCM tokens never look like this.
            token=Concat(Value(ERASED_PREFIX), Cast("pk", output_field=CharField())),
            is_active=False,
            invalidated_at=Coalesce(F("invalidated_at"), Value(now)),
            invalidation_reason=Case(
                When(is_active=True, then=Value(Device.InvalidationReason.ERASED)),
                default=F("invalidation_reason"),
            ),
            app_version="",
            locale="",
            last_seen_at=None,
        )

    old_external_id = locked.external_id
    marker = erased_external_id(old_external_id)
    if Subscriber.objects.filter(external_id=marker).exclude(pk=locked.pk).exists():
        # Someone with this id was erased before (and re-created): that row already
        # suppresses the id; this one only needs a unique marker.
        marker = f"{marker}:{locked.pk}"
    for name in ERASED_FIELDS:
        field = Subscriber._meta.get_field(name)
        assert isinstance(field, Field)
        setattr(locked, name, field.get_default())
    locked.external_id = marker
    locked.push_opt_in = False
    locked.erased_at = now
    locked.save(update_fields=[*ERASED_FIELDS, "external_id", "push_opt_in", "erased_at", "updated_at"])
    ConsentRecord.objects.bulk_create(records)

    # The admin history keeps each object's str() ("Ada Lovelace (user-1)", "iOS …token").
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Subscriber), object_id=str(locked.pk)
    ).update(object_repr=str(locked)[:200])
    if device_ids:
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Device), object_id__in=device_ids
        ).update(object_repr=Concat(Value("Erased device #"), F("object_id")))
