"""Reads for the delivery app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from delivery.models import Delivery, Heartbeat, OutboxMessage

HEARTBEAT_NAME = "beat-worker"
# How many messages the device inbox shows (the newest first).
INBOX_LIMIT = 100


@dataclass(frozen=True)
class PipelineHealth:
    last_beat_at: dt.datetime | None
    healthy: bool


def pipeline_health() -> PipelineHealth:
    """Whether beat and a worker ran the heartbeat recently (3 intervals, ≥ 60 s)."""
    row = Heartbeat.objects.filter(name=HEARTBEAT_NAME).only("beat_at").first()
    if row is None:
        return PipelineHealth(last_beat_at=None, healthy=False)
    window = dt.timedelta(seconds=max(60.0, 3 * settings.NOTIFYHUB_HEARTBEAT_SECONDS))
    return PipelineHealth(last_beat_at=row.beat_at, healthy=timezone.now() - row.beat_at <= window)


def run_delivery_counts(*, run_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per run, how many ledger rows are in each status, e.g. ``{7: {"sent": 3, "failed": 1}}``.

    One aggregate query for any number of runs (an admin page's worth); runs without
    rows are absent.
    """
    ids = list(run_ids)
    counts: dict[int, dict[str, int]] = {}
    if not ids:
        return counts
    rows = (
        Delivery.objects.filter(run_id__in=ids)
        .order_by()
        .values_list("run_id", "status")
        .annotate(n=Count("pk"))
    )
    for run_id, status, n in rows:
        counts.setdefault(run_id, {})[status] = n
    return counts


def device_inbox(*, device_id: int, limit: int = INBOX_LIMIT) -> list[OutboxMessage]:
    """The newest messages the outbox backend stored for one device (one indexed query)."""
    return list(
        OutboxMessage.objects.filter(device_id=device_id)
        .select_related("delivery__run__campaign")
        .order_by("-created_at", "-id")[:limit]
    )
