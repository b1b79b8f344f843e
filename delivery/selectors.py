"""Reads for the delivery app."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from delivery.models import Heartbeat

HEARTBEAT_NAME = "beat-worker"


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
