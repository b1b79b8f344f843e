"""Writes for the delivery app: the heartbeat, starting runs, and test sends."""

# test_send_* are services named <entity>_<action> (a "test send"), not pytest tests.
# ruff: noqa: PT028

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from audiences.models import Device
from campaigns.messages import campaign_message_for, latest_event_properties, subscriber_context
from campaigns.models import Campaign, TestDevice, Variant
from campaigns.services import (
    campaign_complete,
    campaign_first_start,
    campaign_mark_running,
    campaign_next_occurrence,
)
from delivery.backends import (
    MAX_BATCH,
    PushBackend,
    PushBackendUnavailable,
    PushMessage,
    SendResult,
    build_push_message,
    get_backend,
)
from delivery.models import Delivery, Heartbeat, Run
from notifyhub.exceptions import ApplicationError

logger = logging.getLogger(__name__)
# Beat fires a clocked task when it is due, never before; this only absorbs clock skew
# between the beat machine and the worker running the task.
EARLY_TOLERANCE = dt.timedelta(seconds=2)
# A recurring run is for the latest tick of the schedule; a task that reaches a worker
# longer than this after its tick (a long queue, a redelivery) starts nothing.
LATE_TOLERANCE = dt.timedelta(hours=1)


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


def _occurrence(campaign: Campaign, now: dt.datetime) -> dt.datetime | None:
    """The moment this run is for: the clocked time of a one-off, the latest cron tick otherwise.

    The tick, not the minute the worker got the task: a task redelivered minutes
    later must map to the same occurrence (and so to the same run).
    """
    if campaign.is_recurring:
        latest = None
        tick = campaign_next_occurrence(campaign=campaign, after=now - LATE_TOLERANCE)
        while tick is not None and tick <= now + EARLY_TOLERANCE:
            latest, tick = tick, campaign_next_occurrence(campaign=campaign, after=tick)
        return latest
    task = campaign.periodic_task
    if task is not None and task.clocked is not None:
        return task.clocked.clocked_time
    return campaign_first_start(campaign=campaign, now=now)


@transaction.atomic
def run_start(*, campaign_id: int, now: dt.datetime | None = None) -> Run | None:
    """Start the run that is due for a campaign, exactly once. Called by beat (``plan_run``).

    Locks the campaign row, so two beat processes (or a redelivered task) serialize
    here; the run is unique per (campaign, occurrence) in the database as well. Does
    nothing — and returns None — for a campaign that is not scheduled or running
    (paused, cancelled, edited back to draft), before its time, or for a one-off
    that already has its run. A recurring campaign is completed with its last run
    before its end date (or, if called after it, without a run).
    """
    now = now or timezone.now()
    # of=("self",): PostgreSQL cannot lock the nullable side of an outer join.
    campaign = (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("periodic_task__clocked")
        .filter(pk=campaign_id)
        .first()
    )
    if campaign is None:
        logger.warning("plan_run: campaign %s does not exist", campaign_id)
        return None
    if campaign.status not in {Campaign.Status.SCHEDULED, Campaign.Status.RUNNING}:
        logger.info("plan_run: campaign %s is %s; no run", campaign_id, campaign.status)
        return None
    if campaign.is_recurring and campaign.ends_at is not None and now >= campaign.ends_at:
        campaign_complete(campaign=campaign, note="end date reached")
        return None
    occurrence = _occurrence(campaign, now)
    if occurrence is None:
        logger.warning("plan_run: campaign %s has nothing due at %s; no run", campaign_id, now)
        return None
    if now + EARLY_TOLERANCE < occurrence:
        logger.warning("plan_run: campaign %s is not due until %s; no run", campaign_id, occurrence)
        return None
    real_runs = Run.objects.filter(campaign=campaign, is_test=False)
    if not campaign.is_recurring and real_runs.exists():
        return None
    if real_runs.filter(occurrence=occurrence).exists():
        return None
    try:
        with transaction.atomic():
            run = Run.objects.create(campaign=campaign, occurrence=occurrence)
    except IntegrityError:  # the same occurrence, started concurrently
        return None
    campaign_mark_running(campaign=campaign)
    if campaign.is_recurring and campaign.ends_at is not None:
        upcoming = campaign_next_occurrence(campaign=campaign, after=occurrence)
        if upcoming is None or upcoming >= campaign.ends_at:
            # Beat never fires after the end date (the task expires there), so nothing
            # would complete the campaign later: this was its last run.
            campaign_complete(campaign=campaign, note="last run before the end date")
    return run


# ---------------------------------------------------------------------------
# Test sends: one variant of a campaign to the staff member's own test devices.
# ---------------------------------------------------------------------------

D = Delivery.Status
# A claim older than the task's hard time limit cannot belong to a task still running
# (the worker killed it), so a redelivered task may take those rows over.
STALE_CLAIM = dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
OUTCOME_FIELDS = ["status", "reason", "language", "sent_at", "provider_message_id", "error"]


class TestSendError(ApplicationError):
    """A test send cannot start; the message says what to do."""

    __test__ = False  # not a pytest test class


def test_send_create(
    *,
    campaign: Campaign,
    user: AbstractBaseUser,
    variant: Variant | None = None,
    language: str | None = None,
    now: dt.datetime | None = None,
) -> Run:
    """Start a test send of one variant (default: the campaign's first) to ``user``'s test devices.

    Creates, in one transaction, a test Run (``is_test``, status sending) and one
    queued Delivery per active test device, then — after commit — enqueues
    ``delivery.tasks.send_test_run``. A test run holds one variant: the ledger has
    one row per (run, device). Works in any campaign status: marketers test drafts.
    Raises TestSendError (nothing written) when there is nothing to send or no way
    to send it.
    """
    try:
        get_backend()  # refuse now, in the admin, rather than fail later in a worker
    except PushBackendUnavailable as exc:
        raise TestSendError(exc.message) from exc
    if variant is None:
        variant = campaign.variants.order_by("name", "id").first()
        if variant is None:
            raise TestSendError("This campaign has no variants yet: add one, then send a test.")
    elif variant.campaign_id != campaign.pk:
        raise TestSendError(
            f"Variant “{variant.name}” belongs to another campaign: pick one of this campaign's."
        )
    languages = dict(settings.LANGUAGES)
    if language and language not in languages:
        raise TestSendError(
            f"“{language}” is not a language of this site: pick one of {', '.join(languages)}."
        )
    devices = list(
        Device.objects.filter(
            is_active=True, pk__in=TestDevice.objects.filter(user_id=user.pk).values("device_id")
        ).order_by("pk")
    )
    if not devices:
        raise TestSendError("You have no test devices: add one under Campaigns › Test devices")  # noqa: RUF001
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.create(
            campaign=campaign,
            occurrence=now,
            is_test=True,
            status=Run.Status.SENDING,
            started_by_id=user.pk,
            audience_size=len(devices),
            planned_at=now,
        )
        Delivery.objects.bulk_create(
            Delivery(
                run=run,
                device_id=device.pk,
                subscriber_id=device.subscriber_id,
                variant=variant,
                language=language or "",
                scheduled_for=now,
                status=D.QUEUED,
            )
            for device in devices
        )
        # Imported here: the tasks module imports this one.
        from delivery.tasks import send_test_run

        transaction.on_commit(partial(send_test_run.delay, run.pk))
    return run


def test_send_run(*, run_id: int, now: dt.datetime | None = None) -> Run | None:
    """Send a test run's queued rows once, then close the run. Called by ``send_test_run``.

    Bypasses suppression (opt-out, caps, quiet hours): a test goes to the staff
    member's own devices, on demand. Renders each row for the device's subscriber
    (usually the staff member's own test subscriber) in the row's language or theirs.

    Idempotent: one conditional UPDATE claims the queued rows (queued → sending), so a
    second call — a redelivered task — finds nothing to send. Not one transaction:
    outcomes are written per batch of ``MAX_BATCH`` (one bulk UPDATE each), so rows
    already sent stay recorded as sent if a later batch fails. The run is closed
    (completed, or partially failed if any row failed) once no row is open.
    Returns None for an unknown run or one that is not a test.
    """
    run = Run.objects.select_related("campaign").filter(pk=run_id, is_test=True).first()
    if run is None:
        logger.warning("send_test_run: run %s does not exist or is not a test run", run_id)
        return None
    now = now or timezone.now()
    claimable = Q(status=D.QUEUED) | Q(status=D.SENDING, claimed_at__lt=now - STALE_CLAIM)
    claimed = Delivery.objects.filter(claimable, run=run).update(
        status=D.SENDING, claimed_at=now, attempts=F("attempts") + 1
    )
    if claimed:
        rows = list(
            Delivery.objects.filter(run=run, status=D.SENDING, claimed_at=now)
            .select_related("device", "subscriber", "variant")
            .order_by("pk")
        )
        for start in range(0, len(rows), MAX_BATCH):
            _test_send_batch(run=run, rows=rows[start : start + MAX_BATCH])
    _run_close(run=run, now=timezone.now())
    return run


# Named by the house convention <entity>_<action>; not pytest tests when imported by one.
test_send_create.__test__ = False  # type: ignore[attr-defined]
test_send_run.__test__ = False  # type: ignore[attr-defined]


def _test_send_batch(*, run: Run, rows: Sequence[Delivery]) -> None:
    """Render, send and record up to MAX_BATCH claimed rows (one bulk UPDATE)."""
    events = latest_event_properties(subscriber_ids={row.subscriber_id for row in rows})  # one query
    to_send: list[tuple[Delivery, PushMessage]] = []
    for row in rows:
        if row.variant is None:
            _fail(row, reason="variant_deleted", error="The variant was deleted before the test was sent.")
            continue
        try:
            preview = campaign_message_for(
                campaign=run.campaign,
                variant=row.variant,
                subscriber=row.subscriber,
                language=row.language or None,
                context=subscriber_context(
                    subscriber=row.subscriber, latest_events=events[row.subscriber_id]
                ),
            )
        except ApplicationError as exc:  # a template that no longer compiles
            _fail(row, reason="render_error", error=exc.message)
            continue
        row.language = preview.language
        if preview.message is None or preview.reason:
            row.status, row.reason = D.SUPPRESSED, preview.reason or "render_empty"
            continue
        message = build_push_message(
            delivery_id=row.pk,
            device=row.device,
            campaign=run.campaign,
            variant=row.variant,
            rendered=preview.message,
            is_test=True,
            run_id=run.pk,
        )
        to_send.append((row, message))
    if to_send:
        _send_and_apply(to_send)
    Delivery.objects.bulk_update(rows, OUTCOME_FIELDS)


def _send_and_apply(to_send: Sequence[tuple[Delivery, PushMessage]]) -> None:
    """Send through the configured backend and set each row's outcome (not saved here)."""
    backend: PushBackend
    try:
        backend = get_backend()
    except PushBackendUnavailable as exc:
        for row, _message in to_send:
            _fail(row, reason="backend_unavailable", error=exc.message)
        return
    try:
        results = backend.send([message for _row, message in to_send])
    except Exception as exc:  # the ledger must not keep rows "sending" for ever
        logger.exception("send_test_run: the push backend failed")
        for row, _message in to_send:
            _fail(row, reason="backend_error", error=str(exc) or exc.__class__.__name__)
        return
    sent_at = timezone.now()
    for (row, _message), result in zip(to_send, results, strict=True):
        _apply_result(row, result, sent_at=sent_at)


def _apply_result(row: Delivery, result: SendResult, *, sent_at: dt.datetime) -> None:
    if result.ok:
        row.status, row.sent_at, row.provider_message_id = D.SENT, sent_at, result.message_id
        row.reason = row.error = ""
        return
    # FCM error codes: https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
    reason = (result.error_code or "send_failed").lower()
    _fail(row, reason=reason, error=result.error or result.error_code)
    if result.token_invalid:
        row.status = D.INVALID_TOKEN


def _fail(row: Delivery, *, reason: str, error: str) -> None:
    row.status, row.reason, row.error = D.FAILED, reason[:40], error


def _run_close(*, run: Run, now: dt.datetime) -> None:
    """Complete a sending run once none of its rows is open (one aggregate, one UPDATE)."""
    counts = Delivery.objects.filter(run=run).aggregate(
        open=Count("pk", filter=Q(status__in=[D.QUEUED, D.SENDING])),
        failed=Count("pk", filter=Q(status__in=[D.FAILED, D.INVALID_TOKEN])),
    )
    if counts["open"]:
        return
    status = Run.Status.PARTIALLY_FAILED if counts["failed"] else Run.Status.COMPLETED
    if Run.objects.filter(pk=run.pk, status=Run.Status.SENDING).update(status=status, finished_at=now):
        run.status, run.finished_at = status, now
    else:
        run.refresh_from_db(fields=["status", "finished_at"])
