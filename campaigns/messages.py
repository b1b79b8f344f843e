"""What one subscriber gets from one variant: language choice, context, rendered message.

Used by the preview in the admin, by test sends, and by the delivery engine at send
time, so that a preview shows exactly what would be sent (or why nothing would be).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from audiences.models import Event, Subscriber
from campaigns.models import Campaign, Variant
from campaigns.rendering import RenderedMessage, build_context, render_message
from campaigns.selectors import campaign_served_language, variant_languages

# How many recent events the context looks at for "latest properties per event name".
LATEST_EVENTS_SCAN = 200


@dataclass(frozen=True)
class MessagePreview:
    language: str  # the language the message is in
    wanted_language: str  # the subscriber's own language
    message: RenderedMessage | None
    reason: str = ""  # why nothing would be sent ("render_empty"), or ""

    @property
    def is_fallback(self) -> bool:
        return self.language != self.wanted_language


def variant_texts(*, variant: Variant, language: str) -> tuple[str, str]:
    """The raw title and body templates in one language (no modeltranslation fallback)."""
    suffix = language.replace("-", "_")
    return (getattr(variant, f"title_{suffix}", "") or "", getattr(variant, f"body_{suffix}", "") or "")


def latest_event_properties(*, subscriber_ids: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per subscriber, the properties of their latest event of each name (one query)."""
    ids = list(subscriber_ids)
    found: dict[int, dict[str, dict[str, Any]]] = {pk: {} for pk in ids}
    if not ids:
        return found
    rows = (
        Event.objects.filter(subscriber_id__in=ids)
        .order_by("subscriber_id", "-occurred_at", "-id")
        .values_list("subscriber_id", "name", "properties")
    )
    if len(ids) == 1:
        rows = rows[:LATEST_EVENTS_SCAN]
    for subscriber_id, name, properties in rows:
        found[subscriber_id].setdefault(name, properties if isinstance(properties, dict) else {})
    return found


def subscriber_context(
    *, subscriber: Subscriber, latest_events: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The restricted template context of one subscriber (plain values only)."""
    if latest_events is None:
        latest_events = latest_event_properties(subscriber_ids=[subscriber.pk])[subscriber.pk]
    return build_context(
        subscriber={
            "first_name": subscriber.first_name,
            "last_name": subscriber.last_name,
            "city": subscriber.city,
            "country": subscriber.country,
            "language": subscriber.language,
            "timezone": subscriber.timezone,
        },
        attributes=subscriber.attributes or {},
        latest_events=latest_events,
    )


def campaign_message_for(
    *,
    campaign: Campaign,
    variant: Variant,
    subscriber: Subscriber,
    language: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> MessagePreview:
    """Render ``variant`` for ``subscriber`` in their language (or ``language``), with fallback."""
    wanted = language or subscriber.language
    served = campaign_served_language(
        language=wanted, available=variant_languages(variant=variant), default=campaign.default_language
    )
    title, body = variant_texts(variant=variant, language=served)
    if context is None:
        context = subscriber_context(subscriber=subscriber)
    message = render_message(
        title=title, body=body, click_url=variant.click_url, data=variant.data or {}, context=context
    )
    if message.is_empty:
        return MessagePreview(language=served, wanted_language=wanted, message=message, reason="render_empty")
    return MessagePreview(language=served, wanted_language=wanted, message=message)
