"""Celery tasks of the delivery app: thin, idempotent, id-based."""

from __future__ import annotations

import socket

from celery import shared_task

from delivery.selectors import HEARTBEAT_NAME
from delivery.services import heartbeat_record, run_start, test_send_run


@shared_task(name="delivery.tasks.heartbeat")
def heartbeat() -> None:
    """Scheduled by beat (CELERY_BEAT_SCHEDULE); proves beat → broker → worker → DB."""
    heartbeat_record(name=HEARTBEAT_NAME, hostname=socket.gethostname())


@shared_task(name="delivery.tasks.ping", ignore_result=False)
def ping(payload: str) -> str:
    """Round-trip check: returns its payload through the result backend."""
    return f"pong:{payload}"


@shared_task(name="delivery.tasks.plan_run")
def plan_run(campaign_id: int) -> int | None:
    """Fired by a campaign's beat task: start its due run (once), return the run's id.

    Safe to run twice: ``run_start`` refuses a second run for the same occurrence.
    """
    run = run_start(campaign_id=campaign_id)
    return run.pk if run is not None else None


@shared_task(name="delivery.tasks.send_test_run")
def send_test_run(run_id: int) -> str | None:
    """Send a test run (enqueued by ``test_send_create`` after commit); returns its status.

    No retries: every row's outcome, failures included, is recorded in the ledger, and
    a redelivered task sends nothing twice (``test_send_run`` claims rows once).
    """
    run = test_send_run(run_id=run_id)
    return run.status if run is not None else None
