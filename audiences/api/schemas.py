"""Request and response bodies of the client API (pydantic, through django-ninja).

Types are checked here; what the values mean (known time zone, declared attribute
types, existing subscriber…) is checked by the services, which report every problem
with the same ``{"field", "message"}`` shape.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from ninja import Schema
from pydantic import Field, StrictBool


class FieldErrorOut(Schema):
    field: str = Field(description="Where: `events[3].occurred_at`, `attributes.plan`, `token`…")
    message: str = Field(description="What is wrong and what to send instead.")


class ErrorOut(Schema):
    detail: str
    errors: list[FieldErrorOut] = Field(default_factory=list)


class IdentifyIn(Schema):
    """Only the fields you send are changed; `""` clears a text field."""

    external_id: str = Field(min_length=1, max_length=255, description="Your app's id for this user.")
    email: str | None = Field(None, max_length=254)
    first_name: str | None = Field(None, max_length=150)
    last_name: str | None = Field(None, max_length=150)
    language: str | None = Field(None, max_length=10, description="One of the languages NotifyHub offers.")
    timezone: str | None = Field(None, max_length=64, description="IANA name, e.g. Europe/Berlin.")
    country: str | None = Field(None, max_length=2, description="ISO 3166-1 alpha-2, e.g. ES.")
    city: str | None = Field(None, max_length=120)
    interests: list[str] | None = Field(None, description="Replaces the list.")
    # Values are checked by the service (declared types, actionable messages); a
    # pydantic union here would report one cryptic error per union member.
    attributes: dict[str, Any] | None = Field(
        None, description="Text, number, true/false; merged key by key; `null` removes an attribute."
    )
    push_opt_in: StrictBool | None = Field(None, description="Recorded in the consent ledger.")
    topics: dict[str, StrictBool] | None = Field(
        None, description='Topic slug → opted in, e.g. {"offers": false}; recorded in the consent ledger.'
    )


class SubscriberOut(Schema):
    external_id: str
    created: bool
    changed: list[str] = Field(description="Fields this request changed.")
    email: str
    first_name: str
    last_name: str
    language: str
    timezone: str
    country: str
    city: str
    interests: list[str]
    attributes: dict[str, Any]
    push_opt_in: bool
    last_seen_at: dt.datetime | None
    sessions_30d: int
    purchase_count: int
    total_spent: Decimal
    last_purchase_at: dt.datetime | None


class DeviceIn(Schema):
    external_id: str = Field(min_length=1, max_length=255)
    token: str = Field(min_length=1, max_length=4096, description="The FCM registration token (getToken()).")
    platform: str = Field(description="android, ios or web")
    locale: str = Field("", max_length=35, description="The device locale, e.g. pt-BR.")
    app_version: str = Field("", max_length=40)


class DeviceOut(Schema):
    external_id: str
    platform: str
    locale: str
    app_version: str
    is_active: bool
    created: bool
    moved: bool = Field(description="The token belonged to another subscriber and was moved here.")
    reactivated: bool = Field(description="The token had been invalidated and is active again.")


class DeviceRemoveIn(Schema):
    token: str = Field(min_length=1, max_length=4096)


class DeviceRemoveOut(Schema):
    removed: bool = Field(description="False when the device was already inactive.")


class EventIn(Schema):
    external_id: str = Field(min_length=1, max_length=255)
    name: str = Field(
        min_length=1,
        max_length=100,
        description="e.g. purchase (needs properties.amount), session_start, add_to_cart.",
    )
    occurred_at: dt.datetime | None = Field(
        None, description="When it happened, with a time zone offset; defaults to the time received."
    )
    idempotency_key: str = Field(
        min_length=1, max_length=128, description="Unique per event: a resent key is accepted and ignored."
    )
    properties: dict[str, Any] = Field(default_factory=dict)


class EventBatchIn(Schema):
    events: list[EventIn] = Field(description="At most NOTIFYHUB_API_EVENTS_PER_BATCH (1,000) events.")


class EventBatchOut(Schema):
    received: int
    recorded: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events whose idempotency key was already stored (ignored).")


class ReceiptIn(Schema):
    external_id: str = Field(min_length=1, max_length=255, description="The subscriber who got the push.")
    occurred_at: dt.datetime | None = Field(None, description="Defaults to the time received.")
    properties: dict[str, Any] = Field(default_factory=dict, description="E.g. the clicked action.")


class ReceiptOut(Schema):
    recorded: bool = Field(description="False when this receipt was already recorded.")


class PreferenceUrlOut(Schema):
    url: str
    expires_at: dt.datetime
