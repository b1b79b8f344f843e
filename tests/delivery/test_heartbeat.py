"""The heartbeat task that proves beat → broker → worker → database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from delivery.models import Heartbeat
from delivery.selectors import HEARTBEAT_NAME, pipeline_health
from delivery.tasks import heartbeat, ping

pytestmark = pytest.mark.django_db


def test_heartbeat_task_stamps_one_row() -> None:
    assert pipeline_health().healthy is False
    heartbeat.apply()
    heartbeat.apply()
    row = Heartbeat.objects.get(name=HEARTBEAT_NAME)
    assert row.count == 2
    assert row.hostname
    assert pipeline_health().healthy is True


def test_stale_heartbeat_is_unhealthy() -> None:
    Heartbeat.objects.create(name=HEARTBEAT_NAME, beat_at=timezone.now() - dt.timedelta(minutes=10))
    health = pipeline_health()
    assert health.last_beat_at is not None and not health.healthy


def test_ping_returns_its_payload() -> None:
    assert ping.apply(args=["x"]).get() == "pong:x"
