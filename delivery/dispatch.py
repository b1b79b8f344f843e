"""Dispatch: turn due ledger rows into ``send_batch`` tasks, within the throttles.

``dispatch_due`` runs on beat every ``NOTIFYHUB_DISPATCH_SECONDS``. Due work is rows
in the database (``status = queued AND scheduled_for <= now``), never Celery ETA
tasks, so a broker or worker restart loses nothing: the next tick picks them up.

A batch is claimed by one atomic statement that sets ``status = sending`` and
``claimed_at`` (on PostgreSQL ``WITH picked AS MATERIALIZED (SELECT … FOR UPDATE
SKIP LOCKED) UPDATE … RETURNING id``; SQLite serializes writers, so a plain
``UPDATE … WHERE id IN (SELECT …) RETURNING id`` is atomic there). The claim
instant is the batch's token: ``send_batch`` only touches rows still ``sending``
with that ``claimed_at``, so a batch reclaimed after its lease and claimed again can
never be sent by both the stale task and the new one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, Value, When
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import CampaignStateError, campaign_complete
from delivery.backends import MAX_BATCH
from delivery.models import Delivery, Run
from delivery.ratelimit import ProviderRateLimiter, provider_backoff_until
from delivery.suppression import CAMPAIGN_CANCELLED

logger = logging.getLogger(__name__)

D = Delivery.Status
R = Run.Status
# Campaign states in which a run's rows are not sent (they wait, or are suppressed).
HELD = (Campaign.Status.PAUSED, Campaign.Status.CANCELLED)
THROTTLE_WINDOW = dt.timedelta(minutes=1)
LEASE_EXPIRED = "lease_expired"

Enqueue = Callable[[list[int], int], None]


def claim_token(claimed_at: dt.datetime) -> int:
    """The claim instant as an int (microseconds since the epoch): JSON-safe and exact."""
    delta = claimed_at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def claim_instant(token: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=token)


def _no_enqueue(delivery_ids: list[int], claim: int) -> None:
    """The default: enqueue nothing (unit tests call ``send_batch`` themselves)."""


def dispatch_due(
    *,
    now: dt.datetime | None = None,
    enqueue: Enqueue | None = None,
    limiter: ProviderRateLimiter | None = None,
) -> int:
    """Claim the due rows of every sending run and hand each batch to ``enqueue``; return how many.

    One tick of the dispatcher (beat, every ``NOTIFYHUB_DISPATCH_SECONDS``), in order:

    1. rows ``sending`` for longer than ``NOTIFYHUB_SEND_LEASE_SECONDS`` go back to
       ``queued`` (their worker died; attempts are kept);
    2. the queued rows of runs whose campaign was cancelled are suppressed
       (``campaign_cancelled``);
    3. runs with no open row left are closed: completed, partially failed (some
       rows ``failed``) or cancelled, with ``finished_at``; a one-off campaign whose
       run finished is completed;
    4. unless the provider asked us to back off (a 429's Retry-After), due rows
       (``queued``, ``scheduled_for <= now``) of runs that are ``sending`` and whose
       campaign is neither paused nor cancelled are claimed in batches of at most
       ``MAX_BATCH``, round-robin over runs (high-priority campaigns first), each run
       within its campaign's ``throttle_per_minute`` (rows claimed in the last
       minute count) and all together within the provider-wide rate
       (``delivery.ratelimit``).

    ``enqueue(delivery_ids, claim)`` is called after each batch's claim commits (the
    task module passes ``send_batch.delay``); ``claim`` is the batch's token for
    ``send_batch``. Default: enqueue nothing.

    Transactions: each step, and each batch's claim, commits on its own. Idempotent
    and safe to run concurrently (two beat processes, overlapping ticks): every write
    is a conditional UPDATE and claims skip rows another dispatcher holds.
    """
    now = now or timezone.now()
    enqueue = _no_enqueue if enqueue is None else enqueue
    limiter = ProviderRateLimiter.from_settings() if limiter is None else limiter
    deliveries_reclaim_expired(now=now)
    deliveries_suppress_cancelled(now=now)
    runs_close_finished(now=now)
    backoff = provider_backoff_until()
    if backoff is not None and backoff > now:
        logger.info("dispatch: provider backoff until %s; claiming nothing", backoff.isoformat())
        return 0
    return _claim_due(now=now, enqueue=enqueue, limiter=limiter)


def _live_runs(statuses: tuple[str, ...]) -> Q:
    return Q(run__status__in=statuses, run__is_test=False)


def deliveries_reclaim_expired(*, now: dt.datetime) -> int:
    """Put rows whose send lease expired back in the queue (one UPDATE); return how many.

    Only runs that can still send are looked at, so the ``(run, status)`` index keeps
    this cheap however long the ledger grows. ``attempts`` is kept; ``claimed_at``
    too (the throttle counted that claim).
    """
    lease = dt.timedelta(seconds=settings.NOTIFYHUB_SEND_LEASE_SECONDS)
    run_ids = Run.objects.filter(status__in=[R.SENDING, R.PAUSED], is_test=False).values("pk")
    count = Delivery.objects.filter(run_id__in=run_ids, status=D.SENDING, claimed_at__lt=now - lease).update(
        status=D.QUEUED, reason=LEASE_EXPIRED
    )
    if count:
        logger.warning("dispatch: %d rows outlived their send lease; queued again", count)
    return count


def deliveries_suppress_cancelled(*, now: dt.datetime) -> int:
    """Suppress the queued rows of runs whose campaign was cancelled (one UPDATE)."""
    run_ids = Run.objects.filter(
        status__in=[R.SENDING, R.PAUSED], is_test=False, campaign__status=Campaign.Status.CANCELLED
    ).values("pk")
    return Delivery.objects.filter(run_id__in=run_ids, status=D.QUEUED).update(
        status=D.SUPPRESSED, reason=CAMPAIGN_CANCELLED
    )


def runs_close_finished(*, now: dt.datetime) -> list[Run]:
    """Close every run with no queued or sending row left; return the runs closed.

    Completed, or partially failed when some rows ``failed`` (dead tokens are not
    failures: they are the provider telling us a device is gone), or cancelled when
    its campaign was. Each close is one conditional UPDATE (``WHERE status = …``), so
    two dispatchers close a run once; a one-off campaign whose run completed becomes
    completed in the same transaction (``campaign_complete``).
    """
    open_rows = Delivery.objects.filter(run=OuterRef("pk"), status__in=[D.QUEUED, D.SENDING])
    failed_rows = Delivery.objects.filter(run=OuterRef("pk"), status=D.FAILED)
    cancelled = Q(campaign__status=Campaign.Status.CANCELLED)
    finished = list(
        Run.objects.filter(Q(status=R.SENDING) | (Q(status=R.PAUSED) & cancelled), is_test=False)
        .exclude(Exists(open_rows))
        .annotate(has_failures=Exists(failed_rows))
        .select_related("campaign")
        .order_by("pk")
    )
    closed: list[Run] = []
    for run in finished:
        if run.campaign.status == Campaign.Status.CANCELLED:
            status = R.CANCELLED
        elif run.has_failures:  # type: ignore[attr-defined]
            status = R.PARTIALLY_FAILED
        else:
            status = R.COMPLETED
        with transaction.atomic():
            if not Run.objects.filter(pk=run.pk, status=run.status).update(status=status, finished_at=now):
                continue  # another dispatcher closed it
            run.status, run.finished_at = status, now
            closed.append(run)
            campaign = run.campaign
            if (
                status != R.CANCELLED
                and campaign.kind == Campaign.Kind.ONE_OFF
                and not campaign.is_recurring
                and campaign.status == Campaign.Status.RUNNING
            ):
                try:
                    campaign_complete(campaign=campaign, note=f"run {run.pk} finished")
                except CampaignStateError:  # paused or cancelled meanwhile: leave it be
                    logger.info("dispatch: campaign %s not completed (now %s)", campaign.pk, campaign.status)
        logger.info("dispatch: run %s %s", run.pk, status)
    return closed


def _throttle_left(*, run: Run, now: dt.datetime) -> int | None:
    """How many more rows the campaign's per-minute throttle lets this run claim now."""
    per_minute = run.campaign.throttle_per_minute
    if not per_minute:
        return None
    recent = Delivery.objects.filter(run=run, claimed_at__gt=now - THROTTLE_WINDOW).count()
    return max(0, per_minute - recent)


def _claim_sql() -> str:
    table = connection.ops.quote_name(Delivery._meta.db_table)
    # Earliest due first, ties in whatever order the index gives: ``ORDER BY scheduled_for``
    # alone walks the partial index ``delivery_due_idx`` and stops after LIMIT rows, while a
    # tie-break on ``id`` made PostgreSQL sort every queued row of the run for each batch
    # (20 ms per claim at 100,000 rows, so ~1 s of database time per 10,000 rows claimed).
    pick = (
        f"SELECT id FROM {table} WHERE run_id = %s AND status = %s AND scheduled_for <= %s "  # noqa: S608
        "ORDER BY scheduled_for LIMIT %s"
    )
    # Table name from the model's metadata; every value is a bound parameter.
    if connection.features.has_select_for_update_skip_locked:
        # A materialized CTE, not ``id IN (subquery)``: PostgreSQL may re-run such a
        # subquery per outer row, and with SKIP LOCKED each run picks other rows, so
        # the UPDATE could claim more than LIMIT.
        return (
            f"WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED) "  # noqa: S608
            f"UPDATE {table} AS d SET status = %s, claimed_at = %s FROM picked "
            "WHERE d.id = picked.id AND d.status = %s RETURNING d.id"
        )
    # SQLite: one writer at a time, so the plain statement is atomic.
    return (
        f"UPDATE {table} SET status = %s, claimed_at = %s "  # noqa: S608
        f"WHERE id IN ({pick}) AND status = %s RETURNING id"
    )


def deliveries_claim(*, run_id: int, limit: int, now: dt.datetime) -> list[int]:
    """Claim up to ``limit`` due rows of one run (queued → sending, claimed_at = now).

    One statement; rows another transaction holds are skipped (PostgreSQL), so
    concurrent dispatchers never claim a row twice. Returns the claimed ids.
    """
    if limit <= 0:
        return []
    at = connection.ops.adapt_datetimefield_value(now)
    pick: list[Any] = [run_id, D.QUEUED, at, limit]
    update: list[Any] = [D.SENDING, at]
    if connection.features.has_select_for_update_skip_locked:
        params = [*pick, *update, D.QUEUED]
    else:
        params = [*update, *pick, D.QUEUED]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), params)
        return sorted(row[0] for row in cursor.fetchall())


def _claim_due(*, now: dt.datetime, enqueue: Enqueue, limiter: ProviderRateLimiter) -> int:
    due = Delivery.objects.filter(run=OuterRef("pk"), status=D.QUEUED, scheduled_for__lte=now)
    runs = list(
        Run.objects.filter(status=R.SENDING, is_test=False)
        .exclude(campaign__status__in=HELD)
        .filter(Exists(due))
        .select_related("campaign")
        .annotate(
            urgent=Case(
                When(campaign__priority=Campaign.Priority.HIGH, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("urgent", "pk")
    )
    left = {run.pk: _throttle_left(run=run, now=now) for run in runs}
    token = claim_token(now)
    total = 0
    active = [run for run in runs if left[run.pk] != 0]
    while active:
        for run in list(active):
            budget = left[run.pk]
            want = MAX_BATCH if budget is None else min(MAX_BATCH, budget)
            granted = limiter.acquire(want, now=now)
            if granted == 0:
                logger.info("dispatch: provider rate reached; %d rows claimed this tick", total)
                return total
            with transaction.atomic():
                ids = deliveries_claim(run_id=run.pk, limit=granted, now=now)
                if ids:
                    transaction.on_commit(partial(enqueue, ids, token))
            limiter.release(granted - len(ids), now=now)
            total += len(ids)
            if budget is not None:
                left[run.pk] = budget - len(ids)
            if len(ids) < want or left[run.pk] == 0:
                active.remove(run)  # nothing more due, or its throttle is used up
    return total
