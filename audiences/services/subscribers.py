"""Identify a subscriber by external id: create it or update what the client app sent.

Profile fields (email, names, time zone, country, city, interests, custom attributes)
are written here; language, push opt-in and topic choices go through
:func:`audiences.services.subscriber_update_preferences`, so every consent change
lands in the ledger with the caller's source (``api`` for the client API).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from audiences.languages import normalize_language, supported_languages
from audiences.models import AttributeDefinition, Subscriber, Topic
from audiences.services.events import FieldError, FieldValidationError
from audiences.services.preferences import (
    ConsentContext,
    subscriber_record_initial_consent,
    subscriber_update_preferences,
)

PROFILE_FIELDS = ("email", "first_name", "last_name", "timezone", "country", "city", "interests")
MAX_LENGTHS = {"first_name": 150, "last_name": 150, "city": 120}
MAX_INTERESTS = 100
MAX_ATTRIBUTE_TEXT = 1000
ATTRIBUTE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SubscriberValidationError(FieldValidationError):
    """One or more fields were refused; ``errors`` names each field and what to do."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, "The subscriber was not saved: fix the fields listed and send it again.")


@dataclass(frozen=True)
class IdentifyResult:
    subscriber: Subscriber
    created: bool
    changed: list[str]


@functools.cache
def _timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on every call: remember it.
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def iso_countries() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes from the tz database's iso3166.tab (tzdata, else the OS)."""
    try:
        text = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is installed
        text = Path("/usr/share/zoneinfo/iso3166.tab").read_text(encoding="utf-8")
    return frozenset(
        line.split("\t", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )


def _clean_attributes(value: Any, errors: list[FieldError]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        errors.append(FieldError("attributes", 'Send an object, e.g. {"plan": "pro", "age": 31}.'))
        return {}
    declared = dict(
        AttributeDefinition.objects.filter(key__in=[k for k in value if isinstance(k, str)]).values_list(
            "key", "type"
        )
    )
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        where = f"attributes.{key}"
        if not isinstance(key, str) or not ATTRIBUTE_KEY_RE.match(key):
            errors.append(FieldError(where, "Use 1 to 64 letters, digits, '_' or '-' as an attribute name."))
            continue
        if item is None:
            cleaned[key] = None  # removes the attribute
            continue
        kind = declared.get(key)
        problem = _attribute_problem(item, kind)
        if problem:
            errors.append(FieldError(where, problem))
        else:
            cleaned[key] = item
    return cleaned


def _attribute_problem(item: Any, kind: str | None) -> str | None:
    if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
        return f"Keep text attributes to {MAX_ATTRIBUTE_TEXT} characters."
    if isinstance(item, float) and not math.isfinite(item):
        return "Send a finite number."
    if not isinstance(item, str | int | float | bool):
        return "Send text, a number, true/false or null (to remove it); lists and objects are not allowed."
    is_number = isinstance(item, int | float) and not isinstance(item, bool)
    if kind == AttributeDefinition.Type.NUMBER and not is_number:
        return "This attribute is declared as a number: send e.g. 42 or 9.5."
    if kind == AttributeDefinition.Type.BOOLEAN and not isinstance(item, bool):
        return "This attribute is declared as yes/no: send true or false."
    if kind == AttributeDefinition.Type.TEXT and not isinstance(item, str):
        return 'This attribute is declared as text: send a string, e.g. "gold".'
    if kind == AttributeDefinition.Type.DATE and not (isinstance(item, str) and _is_iso_date(item)):
        return 'This attribute is declared as a date: send it as YYYY-MM-DD, e.g. "2025-03-31".'
    return None


def _is_iso_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _clean(changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    for name in ("first_name", "last_name", "city"):
        if name in changes:
            value = str(changes[name] or "").strip()
            if len(value) > MAX_LENGTHS[name]:
                errors.append(FieldError(name, f"Keep it to {MAX_LENGTHS[name]} characters."))
            out[name] = value
    if "email" in changes:
        email = str(changes["email"] or "").strip()
        if email:
            try:
                validate_email(email)
            except ValidationError:
                errors.append(
                    FieldError("email", "Send a valid address like name@example.com, or '' to clear it.")
                )
        out["email"] = email
    if "timezone" in changes:
        tz = str(changes["timezone"] or "").strip()
        if tz not in _timezones():
            errors.append(
                FieldError("timezone", "Use an IANA time zone name, e.g. Europe/Berlin or America/Sao_Paulo.")
            )
        out["timezone"] = tz
    if "country" in changes:
        country = str(changes["country"] or "").strip().upper()
        if country and country not in iso_countries():
            errors.append(FieldError("country", "Use a two-letter ISO 3166-1 code, e.g. DE, ES or BR."))
        out["country"] = country
    if "interests" in changes:
        raw = changes["interests"] or []
        items = [str(i).strip() for i in raw] if isinstance(raw, list | tuple) else None
        if items is None or any(not i or len(i) > 100 for i in items) or len(items) > MAX_INTERESTS:
            errors.append(
                FieldError(
                    "interests", f'Send a list of up to {MAX_INTERESTS} non-empty names, e.g. ["running"].'
                )
            )
        else:
            out["interests"] = list(dict.fromkeys(items))
    if "attributes" in changes:
        out["attributes"] = _clean_attributes(changes["attributes"], errors)
    if "language" in changes:
        code = normalize_language(str(changes["language"] or ""))
        if code not in supported_languages():
            errors.append(FieldError("language", "Use one of: " + ", ".join(supported_languages()) + "."))
        out["language"] = code
    if "push_opt_in" in changes:
        if not isinstance(changes["push_opt_in"], bool):
            errors.append(FieldError("push_opt_in", "Send true or false."))
        out["push_opt_in"] = changes["push_opt_in"]
    if "topics" in changes:
        out["topics"] = _clean_topics(changes["topics"], errors)
    return out, errors


def _clean_topics(value: Any, errors: list[FieldError]) -> dict[Topic, bool]:
    if not isinstance(value, Mapping):
        errors.append(FieldError("topics", 'Send an object of topic slugs, e.g. {"offers": false}.'))
        return {}
    topics = {t.slug: t for t in Topic.objects.filter(slug__in=list(value), is_active=True)}
    cleaned: dict[Topic, bool] = {}
    for slug, opted_in in value.items():
        if slug not in topics:
            errors.append(
                FieldError(f"topics.{slug}", "No active topic has this slug; see the topics in the admin.")
            )
        elif not isinstance(opted_in, bool):
            errors.append(FieldError(f"topics.{slug}", "Send true (opted in) or false (opted out)."))
        else:
            cleaned[topics[slug]] = opted_in
    return cleaned


@transaction.atomic
def subscriber_identify(
    *, external_id: str, changes: Mapping[str, Any], context: ConsentContext
) -> IdentifyResult:
    """Create the subscriber ``external_id`` or update the fields present in ``changes``.

    ``changes`` holds only what the client sent: absent keys are left alone, ``""``
    clears a text field, ``attributes`` are merged key by key (``null`` removes one),
    ``interests`` replace the list. Every field is validated first and all problems
    are reported together (SubscriberValidationError); nothing is written then.

    Transaction: one atomic block; the row is locked (``SELECT … FOR UPDATE``), and a
    concurrent first identify of the same id falls back to the winner's row.
    Idempotent: sending the same values again changes nothing and writes no consent
    records. A new subscriber gets its initial consent record with ``context``.
    """
    errors: list[FieldError] = []
    if not external_id or external_id != external_id.strip() or len(external_id) > 255:
        errors.append(
            FieldError("external_id", "Send the app's user id: 1 to 255 characters, no surrounding spaces.")
        )
    cleaned, field_errors = _clean(changes)
    errors += field_errors
    if errors:
        raise SubscriberValidationError(errors)

    profile = {k: v for k, v in cleaned.items() if k in PROFILE_FIELDS}
    attributes = cleaned.get("attributes", {})
    subscriber = Subscriber.objects.select_for_update().filter(external_id=external_id).first()
    created = False
    if subscriber is None:
        # Someone who erased their data is never stored (or messaged) again under this id.
        from audiences.services.privacy import subscriber_ensure_not_erased

        subscriber_ensure_not_erased(external_id=external_id)
        initial = {k: cleaned[k] for k in ("language", "push_opt_in") if k in cleaned}
        try:
            with transaction.atomic():
                subscriber = Subscriber.objects.create(
                    external_id=external_id,
                    attributes={k: v for k, v in attributes.items() if v is not None},
                    **profile,
                    **initial,
                )
            created = True
        except IntegrityError:
            subscriber = Subscriber.objects.select_for_update().get(external_id=external_id)

    changed: list[str] = []
    if created:
        subscriber_record_initial_consent(subscribers=[subscriber], context=context)
        changed = [*profile, *(["attributes"] if attributes else []), *initial]
    else:
        for name, value in profile.items():
            if getattr(subscriber, name) != value:
                setattr(subscriber, name, value)
                changed.append(name)
        if attributes:
            merged = {**subscriber.attributes}
            for key, value in attributes.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            if merged != subscriber.attributes:
                subscriber.attributes = merged
                changed.append("attributes")
        if changed:
            subscriber.save(update_fields=[*changed, "updated_at"])

    # Consent and language go through the preference service (ledger, source=context);
    # on creation they were initial values, recorded by the initial consent above.
    preferences: dict[str, Any] = {}
    if not created:
        preferences = {k: cleaned[k] for k in ("language", "push_opt_in") if k in cleaned}
    if cleaned.get("topics"):
        preferences["topics"] = cleaned["topics"]
    if preferences:
        records = subscriber_update_preferences(subscriber=subscriber, context=context, **preferences)
        changed += sorted({r.field for r in records} - set(changed))
    return IdentifyResult(subscriber=subscriber, created=created, changed=changed)
