"""Writes for the delivery app."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from delivery.models import Heartbeat


def heartbeat_record(*, name: str, hostname: str = "") -> None:
    """Stamp the named heartbeat with the current time.

    Idempotent and race-free: one conditional UPDATE, and an insert only the very
    first time (a concurrent first insert is absorbed by the unique name).
    """
    now = timezone.now()
    updated = Heartbeat.objects.filter(name=name).update(beat_at=now, hostname=hostname, count=F("count") + 1)
    if not updated:
        Heartbeat.objects.get_or_create(
            name=name, defaults={"beat_at": now, "hostname": hostname, "count": 1}
        )
