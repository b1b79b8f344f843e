"""Celery tasks of the delivery app: thin, idempotent, id-based."""

from __future__ import annotations

import socket

from celery import shared_task

from delivery.selectors import HEARTBEAT_NAME
from delivery.services import heartbeat_record


@shared_task(name="delivery.tasks.heartbeat")
def heartbeat() -> None:
    """Scheduled by beat (CELERY_BEAT_SCHEDULE); proves beat → broker → worker → DB."""
    heartbeat_record(name=HEARTBEAT_NAME, hostname=socket.gethostname())


@shared_task(name="delivery.tasks.ping", ignore_result=False)
def ping(payload: str) -> str:
    """Round-trip check: returns its payload through the result backend."""
    return f"pong:{payload}"
