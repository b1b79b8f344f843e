"""Writes for the audiences app: preference changes and the consent ledger.

Every preference change — from the preference center, the client API, an import or
the admin — goes through :func:`subscriber_update_preferences`, which appends one
``ConsentRecord`` per changed value, in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from audiences.languages import normalize_language, supported_languages
from audiences.models import ConsentRecord, Subscriber, Topic, TopicPreference
from notifyhub.exceptions import ApplicationError


class PreferenceError(ApplicationError):
    """A requested preference value is not allowed."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True, kw_only=True)
class ConsentContext:
    """Who or what made a change, for the consent ledger."""

    source: str
    actor: AbstractBaseUser | None = None
    source_detail: str = ""
    ip_address: str = ""
    user_agent: str = ""

    def __post_init__(self) -> None:
        if self.source not in ConsentRecord.Source.values:
            raise PreferenceError(f"Unknown consent source {self.source!r}.")

    def record_kwargs(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_detail": self.source_detail[:255],
            "actor": self.actor if self.actor is not None and self.actor.pk else None,
            "ip_hash": _keyed_hash(self.ip_address),
            "user_agent_hash": _keyed_hash(self.user_agent),
        }


def _keyed_hash(value: str) -> str:
    """A keyed hash: proves "same address as before" without storing the address."""
    if not value:
        return ""
    key = f"notifyhub.consent:{settings.SECRET_KEY}".encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.time | dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


@transaction.atomic
def subscriber_update_preferences(
    *,
    subscriber: Subscriber,
    context: ConsentContext,
    push_opt_in: bool | _Unset = UNSET,
    frequency_limit: str | _Unset = UNSET,
    quiet_hours: tuple[dt.time, dt.time] | _Unset | None = UNSET,
    language: str | _Unset = UNSET,
    paused_until: dt.datetime | _Unset | None = UNSET,
    topics: Mapping[Topic, bool] | None = None,
) -> list[ConsentRecord]:
    """Apply preference changes and append one ConsentRecord per value that changed.

    Transaction: one atomic block; the subscriber row is locked (``SELECT … FOR
    UPDATE``) so concurrent changes serialize and each record's old value is the real
    previous value. Idempotent: values equal to the current ones are skipped, and a
    call that changes nothing writes nothing and returns ``[]``. ``subscriber`` is
    refreshed in place with the stored values.
    """
    locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    records: list[ConsentRecord] = []
    changed_fields: list[str] = []
    base = context.record_kwargs()

    def change(field: str, old: Any, new: Any, *, topic: Topic | None = None) -> None:
        records.append(
            ConsentRecord(
                subscriber=locked,
                field=field,
                topic=topic,
                old_value=_json_value(old),
                new_value=_json_value(new),
                **base,
            )
        )

    if not isinstance(push_opt_in, _Unset) and push_opt_in != locked.push_opt_in:
        change("push_opt_in", locked.push_opt_in, bool(push_opt_in))
        locked.push_opt_in = bool(push_opt_in)
        changed_fields.append("push_opt_in")

    if not isinstance(frequency_limit, _Unset) and frequency_limit != locked.frequency_limit:
        if frequency_limit not in Subscriber.FrequencyLimit.values:
            raise PreferenceError(
                f"Frequency {frequency_limit!r} is not one of: "
                + ", ".join(Subscriber.FrequencyLimit.values)
                + "."
            )
        change("frequency_limit", locked.frequency_limit, frequency_limit)
        locked.frequency_limit = frequency_limit
        changed_fields.append("frequency_limit")

    if not isinstance(quiet_hours, _Unset):
        old_hours = (
            (locked.quiet_hours_start, locked.quiet_hours_end)
            if locked.quiet_hours_start is not None and locked.quiet_hours_end is not None
            else None
        )
        if quiet_hours is not None and (len(quiet_hours) != 2 or quiet_hours[0] == quiet_hours[1]):
            raise PreferenceError("Quiet hours need a start and a different end time.")
        if quiet_hours != old_hours:
            change("quiet_hours", old_hours, quiet_hours)
            locked.quiet_hours_start, locked.quiet_hours_end = quiet_hours or (None, None)
            changed_fields += ["quiet_hours_start", "quiet_hours_end"]

    if not isinstance(language, _Unset):
        code = normalize_language(language)
        if code not in supported_languages():
            raise PreferenceError(
                f"Language {language!r} is not offered; use one of: " + ", ".join(supported_languages()) + "."
            )
        if code != locked.language:
            change("language", locked.language, code)
            locked.language = code
            changed_fields.append("language")

    if not isinstance(paused_until, _Unset) and paused_until != locked.paused_until:
        change("paused_until", locked.paused_until, paused_until)
        locked.paused_until = paused_until
        changed_fields.append("paused_until")

    if topics:
        current = {
            pref.topic_id: pref
            for pref in TopicPreference.objects.select_for_update().filter(
                subscriber=locked, topic__in=list(topics)
            )
        }
        for topic, opted_in in topics.items():
            existing = current.get(topic.pk)
            old = existing.opted_in if existing is not None else topic.default_opt_in
            if existing is not None and existing.opted_in == opted_in:
                continue
            if existing is None:
                TopicPreference.objects.create(subscriber=locked, topic=topic, opted_in=opted_in)
            else:
                existing.opted_in = opted_in
                existing.save(update_fields=["opted_in", "updated_at"])
            # Making an implicit default explicit is stored but is not a change of consent.
            if old != opted_in:
                change("topic", old, opted_in, topic=topic)

    if changed_fields:
        locked.save(update_fields=[*changed_fields, "updated_at"])
    if records:
        ConsentRecord.objects.bulk_create(records)
    for field in (*changed_fields, "updated_at"):
        setattr(subscriber, field, getattr(locked, field))
    return records


def subscriber_record_initial_consent(
    *, subscribers: list[Subscriber], context: ConsentContext
) -> list[ConsentRecord]:
    """Write the first ledger entry (``None`` → current opt-in) for new subscribers.

    Set-based: one ``bulk_create`` for the whole list. Call it in the transaction that
    created the subscribers; subscribers that already have records are skipped, so a
    repeated call writes nothing new.
    """
    ids = [s.pk for s in subscribers]
    already = set(
        ConsentRecord.objects.filter(subscriber_id__in=ids, field="push_opt_in")
        .values_list("subscriber_id", flat=True)
        .distinct()
    )
    base = context.record_kwargs()
    records = [
        ConsentRecord(subscriber=s, field="push_opt_in", old_value=None, new_value=s.push_opt_in, **base)
        for s in subscribers
        if s.pk not in already
    ]
    return ConsentRecord.objects.bulk_create(records, batch_size=1000)
