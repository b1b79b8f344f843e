"""``run_plan``: a pending Run becomes its Delivery rows, in one transaction and one statement."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import campaign_audience
from campaigns.services import campaign_complete
from delivery.models import Delivery, Run
from delivery.planning.assignment import assignment_for
from delivery.planning.statement import insert_sql
from delivery.planning.timing import Timing, known_zones, zone_or_none, zone_timing

logger = logging.getLogger(__name__)
D = Delivery.Status


@transaction.atomic
def run_plan(*, run_id: int, now: dt.datetime | None = None) -> int:
    """Plan a pending run: insert its Delivery rows in one statement; return how many.

    Transaction: one. It starts with the guard ``UPDATE run SET status='planning'
    WHERE status='pending'`` (a concurrent call waits on that row, then finds nothing
    to do) and ends with planning → sending (or completed when nothing is queued:
    empty audience, everyone control or suppressed), with ``audience_size`` (the
    ledger rows planned, control and suppressed included) and ``planned_at``. A crash
    rolls all of it back, so the run is pending again and a retry plans it.

    Idempotent: a run that is not pending — planned already, a test run, unknown —
    returns 0 and changes nothing; the rows are unique per (run, device) and
    inserted with ON CONFLICT DO NOTHING besides. A cancelled campaign cancels the
    run; one without variants pauses it with an error. Queries: a fixed handful
    (run, variants, segments, the INSERT, the final UPDATE), whatever the audience
    size; memory is the per-zone and per-language maps, also independent of it.
    """
    now = now or timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=Run.Status.PENDING, is_test=False).update(
        status=Run.Status.PLANNING
    )
    if not claimed:
        logger.info("run_plan: run %s is not pending; nothing to plan", run_id)
        return 0
    run = Run.objects.select_related("campaign").get(pk=run_id)
    campaign = run.campaign
    if campaign.status == Campaign.Status.CANCELLED:
        _finish(run, status=Run.Status.CANCELLED, now=now, size=0)
        return 0
    variants = list(campaign.variants.order_by("name", "id"))
    if not variants:
        _finish(
            run,
            status=Run.Status.PAUSED,
            now=now,
            size=0,
            error="This campaign has no variants: add one, then start the run again.",
        )
        return 0
    assignment = assignment_for(campaign=campaign, variants=variants)

    fallback_zone = zone_or_none(campaign.fallback_timezone) or zoneinfo.ZoneInfo("UTC")

    def timing_in(zone: zoneinfo.ZoneInfo) -> tuple[Timing, int]:
        timing = zone_timing(campaign=campaign, occurrence=run.occurrence, zone=zone, now=now)
        return timing, timing.local_seconds(zone)

    # Every IANA zone (no query, and unknown names fall back in SQL), every site language.
    zones = {name: timing_in(zoneinfo.ZoneInfo(name)) for name in known_zones()}
    audience_sql, audience_params = (
        campaign_audience(campaign=campaign)
        .values("id", "language", "timezone", "quiet_hours_start", "quiet_hours_end")
        .query.sql_with_params()
    )
    sql, params = insert_sql(
        run=run,
        campaign=campaign,
        assignment=assignment,
        audience_sql=audience_sql,
        audience_params=audience_params,
        zones=zones,
        fallback=timing_in(fallback_zone),
        languages={code for code, _name in settings.LANGUAGES},
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The planner underestimates a reachable audience (the topic opt-in is an OR of
            # EXISTS) and probes the subscriber index once per device; planning always reads
            # the audience as a whole, which hash joins do several times faster. Local to
            # this transaction.
            cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute(sql, params)
        inserted = max(cursor.rowcount, 0)
    if Delivery.objects.filter(run_id=run.pk, status=D.QUEUED).exists():
        _finish(run, status=Run.Status.SENDING, now=now, size=inserted, finished=False)
    elif campaign.ab_mode == Campaign.AbMode.TEST_THEN_WINNER:
        # The held-back audience still waits for the winner: the run is not over.
        _finish(run, status=Run.Status.SENDING, now=now, size=inserted, finished=False)
    else:
        _finish(run, status=Run.Status.COMPLETED, now=now, size=inserted)
        _complete_one_off(campaign)
    logger.info("run_plan: run %s planned %s deliveries", run.pk, inserted)
    return inserted


def _finish(
    run: Run, *, status: str, now: dt.datetime, size: int, finished: bool = True, error: str = ""
) -> None:
    Run.objects.filter(pk=run.pk, status=Run.Status.PLANNING).update(
        status=status,
        audience_size=size,
        planned_at=now,
        finished_at=now if finished else None,
        error=error,
    )


def _complete_one_off(campaign: Campaign) -> None:
    """A one-off run with nothing to send is the end of the campaign (no send step will close it)."""
    if not campaign.is_recurring and campaign.status == Campaign.Status.RUNNING:
        campaign_complete(campaign=campaign, note="nothing to send")


def run_plan_pending(*, campaign_id: int, now: dt.datetime | None = None) -> int:
    """Plan every pending (real) run of a campaign; return the rows inserted.

    For ``plan_run`` after ``run_start``: a task redelivered after a crash between
    starting and planning finds its run pending (``run_start`` refuses a second one).
    Each run is planned in its own transaction by ``run_plan``.
    """
    pending = Run.objects.filter(campaign_id=campaign_id, status=Run.Status.PENDING, is_test=False)
    return sum(
        run_plan(run_id=pk, now=now) for pk in pending.order_by("occurrence").values_list("pk", flat=True)
    )
