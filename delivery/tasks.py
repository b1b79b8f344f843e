"""Celery tasks of the delivery app: thin, idempotent, id-based."""

from __future__ import annotations

import socket
from typing import Any

from celery import shared_task

from delivery import dispatch, sending
from delivery.planning import run_plan_pending
from delivery.receipts import conversions_update
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
def plan_run(campaign_id: int) -> int:
    """Fired by a campaign's beat task: start its due run (once) and plan it; return rows planned.

    Safe to run twice: ``run_start`` refuses a second run for the same occurrence, and
    planning is guarded by the run's status (pending → planning), so a redelivered
    task plans a run left pending by a crash and nothing else.
    """
    run_start(campaign_id=campaign_id)
    return run_plan_pending(campaign_id=campaign_id)


@shared_task(name="delivery.tasks.dispatch_due")
def dispatch_due() -> int:
    """Beat, every NOTIFYHUB_DISPATCH_SECONDS: claim due rows (≤ 500 a batch), enqueue their sends.

    Claims are atomic status changes in the database; the send tasks are enqueued after
    the claim commits. A lost task is harmless: its rows are claimed again after the lease.
    """

    def enqueue(delivery_ids: list[int], claim: int) -> None:
        send_batch.delay(delivery_ids, claim)

    return dispatch.dispatch_due(enqueue=enqueue)


@shared_task(name="delivery.tasks.send_batch")
def send_batch(delivery_ids: list[int], claim: int | None = None) -> dict[str, Any]:
    """Send one claimed batch (queue ``send``); outcomes are recorded in the ledger rows.

    No Celery retries: transient failures go back to the rows with their own backoff,
    and only rows still claimed under ``claim`` are sent, so a stale task sends nothing.
    """
    return sending.send_batch(delivery_ids=delivery_ids, claim=claim).as_dict()


@shared_task(name="delivery.tasks.update_conversions")
def update_conversions() -> int:
    """Beat, every 5 minutes: stamp conversions (goal events within the window) set-based."""
    return conversions_update()


@shared_task(name="delivery.tasks.send_test_run")
def send_test_run(run_id: int) -> str | None:
    """Send a test run (enqueued by ``test_send_create`` after commit); returns its status.

    No retries: every row's outcome, failures included, is recorded in the ledger, and
    a redelivered task sends nothing twice (``test_send_run`` claims rows once).
    """
    run = test_send_run(run_id=run_id)
    return run.status if run is not None else None
