"""Keep a campaign's django-celery-beat objects in step with the campaign.

A scheduled campaign owns one ``PeriodicTask`` that calls ``delivery.tasks.plan_run``
with the campaign's id: on a ``ClockedSchedule`` (one-off: send now, at a time, at a
local time) or a ``CrontabSchedule`` (recurring). Beat reads them from the database
(``DatabaseScheduler``), so they are visible and editable in the admin's Schedules
section, and a restart loses nothing. The task itself refuses to start a run early
or twice (see ``delivery.services.run_start``); this module only decides *when*.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

from celery.schedules import crontab
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from campaigns.models import Campaign
from notifyhub.exceptions import ApplicationError

PLAN_RUN_TASK = "delivery.tasks.plan_run"
# The earliest any place on earth reaches a given local time: UTC+14 (Kiritimati).
EARLIEST_UTC_OFFSET = dt.timedelta(hours=14)


class ScheduleError(ApplicationError):
    pass


def campaign_first_start(*, campaign: Campaign, now: dt.datetime | None = None) -> dt.datetime | None:
    """When a one-off campaign's run starts (UTC); None for recurring ones.

    A local-time campaign starts when the first time zone reaches that local time,
    so that planning can hold each subscriber's message until their own local time.
    """
    now = now or timezone.now()
    kind = campaign.schedule_type
    if kind == Campaign.ScheduleType.NOW:
        return now
    if kind == Campaign.ScheduleType.AT:
        return campaign.send_at
    if kind == Campaign.ScheduleType.LOCAL_TIME:
        if campaign.local_date is None or campaign.local_time is None:
            return None
        local = dt.datetime.combine(campaign.local_date, campaign.local_time, tzinfo=dt.UTC)
        return max(now, local - EARLIEST_UTC_OFFSET)
    return None


def crontab_fields(*, campaign: Campaign) -> dict[str, str]:
    """The CrontabSchedule fields of a recurring campaign; ScheduleError when they are wrong."""
    kind = campaign.schedule_type
    if kind == Campaign.ScheduleType.CRON:
        parts = campaign.cron_expression.split()
        if len(parts) != 5:
            raise ScheduleError(
                f"The cron expression “{campaign.cron_expression}” needs five fields: minute hour "
                "day-of-month month day-of-week, e.g. “0 9 * * 1-5”."
            )
        fields = dict(
            zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), parts, strict=True)
        )
    else:
        if campaign.local_time is None:
            raise ScheduleError("Choose the time of day a recurring campaign sends at.")
        fields = {
            "minute": str(campaign.local_time.minute),
            "hour": str(campaign.local_time.hour),
            "day_of_month": "*",
            "month_of_year": "*",
            "day_of_week": "*",
        }
        if kind == Campaign.ScheduleType.WEEKLY:
            days = [day.strip() for day in campaign.weekdays.split(",") if day.strip()]
            if not days or any(not day.isdigit() or int(day) > 6 for day in days):
                raise ScheduleError(
                    "Choose the weekdays of a weekly campaign as numbers, 0 = Sunday … 6 = Saturday, "
                    "e.g. “1,3,5”."
                )
            fields["day_of_week"] = ",".join(days)
    try:
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"The schedule “{' '.join(fields.values())}” is not valid: {exc}.") from exc
    return fields


def schedule_zone(*, campaign: Campaign) -> zoneinfo.ZoneInfo:
    """The time zone of a recurring schedule; ScheduleError when it is not one."""
    try:
        return zoneinfo.ZoneInfo(campaign.schedule_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"“{campaign.schedule_timezone}” is not a time zone; choose one such as “Europe/Berlin”."
        ) from exc


def campaign_next_occurrence(*, campaign: Campaign, after: dt.datetime) -> dt.datetime | None:
    """The first tick of a recurring campaign's schedule strictly after ``after`` (UTC); None for one-offs.

    Computed by the code beat itself uses (``celery.schedules.crontab``) in the
    schedule's time zone, so it agrees with beat across daylight-saving changes.
    """
    if not campaign.is_recurring:
        return None
    zone = schedule_zone(campaign=campaign)
    schedule = crontab(**crontab_fields(campaign=campaign))
    last, delta, _now = schedule.remaining_delta(after.astimezone(zone), tz=zone)
    return (last + delta).astimezone(dt.UTC)


def campaign_schedule_check(*, campaign: Campaign, now: dt.datetime | None = None) -> None:
    """Refuse a schedule that cannot run: missing times, times in the past, bad cron."""
    now = now or timezone.now()
    if campaign.kind == Campaign.Kind.TRIGGERED:
        return
    kind = campaign.schedule_type
    if kind == Campaign.ScheduleType.AT:
        if campaign.send_at is None:
            raise ScheduleError("Choose the date and time to send at.")
        if campaign.send_at < now - dt.timedelta(minutes=1):
            raise ScheduleError(
                f"The send time {campaign.send_at:%Y-%m-%d %H:%M} UTC is in the past; choose a later one "
                "or “Send now”."
            )
    elif kind == Campaign.ScheduleType.LOCAL_TIME:
        if campaign.local_date is None or campaign.local_time is None:
            raise ScheduleError("Choose the local date and time to send at.")
        latest = dt.datetime.combine(campaign.local_date, campaign.local_time, tzinfo=dt.UTC) + dt.timedelta(
            hours=12
        )
        if latest < now:
            raise ScheduleError(
                f"{campaign.local_date:%Y-%m-%d} {campaign.local_time:%H:%M} has passed in every time zone; "
                "choose a later date."
            )
    elif campaign.is_recurring:
        crontab_fields(campaign=campaign)
        schedule_zone(campaign=campaign)
        if campaign.ends_at is not None:
            if campaign.ends_at <= now:
                raise ScheduleError("The end date of this recurring campaign has passed; choose a later one.")
            # Beat stops at the end date (the task expires): a schedule with no tick
            # before it would stay "scheduled" forever without ever sending.
            first = campaign_next_occurrence(campaign=campaign, after=now)
            if first is None or first >= campaign.ends_at:
                raise ScheduleError(
                    f"This schedule sends nothing before its end date {campaign.ends_at:%Y-%m-%d %H:%M} UTC; "
                    "choose a later end date."
                )
    if campaign.kind == Campaign.Kind.RECURRING and not campaign.is_recurring:
        raise ScheduleError("A recurring campaign needs a daily, weekly or cron schedule.")
    if campaign.kind == Campaign.Kind.ONE_OFF and campaign.is_recurring:
        raise ScheduleError("A one-off campaign is sent now, at a time or at a local time — not on repeat.")


def _task_name(campaign: Campaign) -> str:
    return f"Campaign #{campaign.pk}: {campaign.name}"[:200]


@transaction.atomic
def campaign_sync_schedule(*, campaign: Campaign, now: dt.datetime | None = None) -> PeriodicTask | None:
    """Create, update, disable or remove the campaign's PeriodicTask to match its status.

    Scheduled or running: an enabled task on the right schedule. Paused: the same
    task, disabled. Draft, in review, approved: no task. Completed or cancelled: the
    task stays, disabled, as a record. Idempotent; triggered campaigns have none.
    """
    now = now or timezone.now()
    task = campaign.periodic_task
    status = campaign.status
    wanted = campaign.kind != Campaign.Kind.TRIGGERED and status in {
        Campaign.Status.SCHEDULED,
        Campaign.Status.RUNNING,
        Campaign.Status.PAUSED,
    }
    if not wanted:
        if task is None:
            return None
        if status in {Campaign.Status.COMPLETED, Campaign.Status.CANCELLED}:
            if task.enabled:
                task.enabled = False
                task.save(update_fields=["enabled"])
            return task
        Campaign.objects.filter(pk=campaign.pk).update(periodic_task=None)
        campaign.periodic_task = None
        _delete_task(task)
        return None
    if task is None:
        task = PeriodicTask(name=_task_name(campaign), task=PLAN_RUN_TASK)
    task.name = _task_name(campaign)
    task.task = PLAN_RUN_TASK
    task.kwargs = json.dumps({"campaign_id": campaign.pk})
    task.description = f"Starts a run of campaign #{campaign.pk} (managed by NotifyHub: edit the campaign)."
    task.enabled = status != Campaign.Status.PAUSED
    old_clocked, old_crontab = task.clocked, task.crontab
    if campaign.is_recurring:
        fields = crontab_fields(campaign=campaign)
        task.crontab, _created = CrontabSchedule.objects.get_or_create(
            **fields, timezone=schedule_zone(campaign=campaign)
        )
        task.clocked = None
        task.one_off = False
        task.expires = campaign.ends_at
        task.start_time = None
    else:
        start = campaign_first_start(campaign=campaign, now=now)
        if start is None:
            raise ScheduleError("This campaign has no send time.")
        keep = task.clocked is not None and (
            task.clocked.clocked_time == start
            # "Send now" asks for the current time on every sync, and a started run
            # must not move: replacing (and deleting) the clocked schedule of a task
            # beat has loaded crashes beat's next reload.
            or campaign.schedule_type == Campaign.ScheduleType.NOW
            or status == Campaign.Status.RUNNING
        )
        if not keep:
            task.clocked = ClockedSchedule.objects.create(clocked_time=start)
        task.crontab = None
        task.one_off = True
        task.expires = None
        if status == Campaign.Status.RUNNING:
            # A one-off that has started: nothing left for beat to do.
            task.enabled = False
    task.save()
    if campaign.periodic_task_id != task.pk:
        Campaign.objects.filter(pk=campaign.pk).update(periodic_task=task)
        campaign.periodic_task = task
    if old_clocked is not None and old_clocked != task.clocked:
        _delete_orphan_clocked(old_clocked)
    if old_crontab is not None and old_crontab != task.crontab:
        _delete_orphan_crontab(old_crontab)
    return task


def _delete_task(task: PeriodicTask) -> None:
    clocked, cron = task.clocked, task.crontab
    task.delete()
    if clocked is not None:
        _delete_orphan_clocked(clocked)
    if cron is not None:
        _delete_orphan_crontab(cron)


def _delete_orphan_clocked(clocked: ClockedSchedule) -> None:
    if not PeriodicTask.objects.filter(clocked=clocked).exists():
        clocked.delete()


def _delete_orphan_crontab(cron: CrontabSchedule) -> None:
    # Crontabs are shared (get_or_create); others may still use this one.
    if not PeriodicTask.objects.filter(crontab=cron).exists():
        cron.delete()
