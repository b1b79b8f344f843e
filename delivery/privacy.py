"""Delivery's part of a subscriber's data export and erasure (see audiences.services.privacy).

Audiences cannot import delivery (``audiences ← campaigns ← delivery``), so this app
registers its section and hook from ``DeliveryConfig.ready()`` by calling
:func:`register`.
"""

from __future__ import annotations

from typing import Any

from audiences.models import Subscriber
from audiences.services import register_erase_hook, register_export_section
from delivery.models import Delivery, OutboxMessage


def deliveries_export(*, subscriber: Subscriber, limit: int) -> list[dict[str, Any]]:
    """The subscriber's ``limit`` newest ledger rows: what was (or was not) sent, and why.

    One query. JSON-serializable (times as ISO 8601).
    """
    rows = (
        Delivery.objects.filter(subscriber=subscriber)
        .select_related("run__campaign__topic", "variant", "device")
        .order_by("-scheduled_for", "-id")[:limit]
    )

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return [
        {
            "campaign": row.run.campaign.name,
            "topic": row.run.campaign.topic.slug,
            "test_send": row.run.is_test,
            "variant": row.variant.name if row.variant is not None else None,
            "control_group": row.is_control,
            "platform": row.device.platform,
            "language": row.language,
            "status": row.status,
            "reason": row.reason,
            "scheduled_for": iso(row.scheduled_for),
            "sent_at": iso(row.sent_at),
            "opened_at": iso(row.opened_at),
            "clicked_at": iso(row.clicked_at),
            "converted_at": iso(row.converted_at),
        }
        for row in rows
    ]


def outbox_erase(*, subscriber: Subscriber) -> None:
    """Delete the outbox's stored messages to the subscriber's devices.

    They are rendered with the person's data (name, city…) and hold the push token.
    The ledger rows stay: they name no one once the subscriber is erased.
    """
    OutboxMessage.objects.filter(device__subscriber=subscriber).delete()


def register() -> None:
    """Idempotent: registering again replaces the same entries."""
    register_export_section("deliveries", deliveries_export)
    register_erase_hook("delivery.outbox", outbox_erase)
