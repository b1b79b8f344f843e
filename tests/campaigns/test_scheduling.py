"""When a campaign sends: the django-celery-beat objects that scheduling keeps in step.

One-offs get a ClockedSchedule (a local-time campaign's starts when the first time
zone, UTC+14, reaches that time); recurring ones a CrontabSchedule in their own time
zone, expiring at the end date. Every schedule the marketer can get wrong is refused
with a message that says what to fix.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from campaigns.models import Campaign
from campaigns.services import (
    CampaignStateError,
    ScheduleError,
    campaign_first_start,
    campaign_launch,
    campaign_next_occurrence,
    campaign_pause,
    campaign_save,
    campaign_schedule_check,
    campaign_sync_schedule,
    crontab_fields,
)
from tests.factories import CampaignFactory, VariantFactory

pytestmark = pytest.mark.django_db

T = Campaign.ScheduleType
UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def launched(**fields: Any) -> Campaign:
    campaign = CampaignFactory(**fields)
    VariantFactory(campaign=campaign, name="A")
    return campaign_launch(campaign=campaign, actor=None)


def recurring(**fields: Any) -> dict[str, Any]:
    return {"kind": Campaign.Kind.RECURRING, "local_time": dt.time(9, 30), **fields}


def future(**delta: float) -> dt.datetime:
    return (timezone.now() + dt.timedelta(**delta)).replace(microsecond=0)


# -- one-offs: a ClockedSchedule ---------------------------------------------------------


def test_send_now_is_clocked_at_the_moment_of_launch() -> None:
    before = timezone.now()
    campaign = launched(schedule_type=T.NOW)
    task = campaign.periodic_task
    assert task is not None and task.one_off and task.enabled and task.crontab is None
    assert before <= task.clocked.clocked_time <= timezone.now()


def test_at_is_clocked_at_the_send_time() -> None:
    send_at = future(days=3)
    task = launched(schedule_type=T.AT, send_at=send_at).periodic_task
    assert task is not None
    assert task.clocked.clocked_time == send_at
    assert json.loads(task.kwargs) == {"campaign_id": Campaign.objects.get().pk}
    assert task.expires is None


def test_local_time_starts_when_the_earliest_time_zone_reaches_it() -> None:
    # 09:00 on 1 June is first reached in Kiritimati (UTC+14): 19:00 UTC the day before.
    campaign = CampaignFactory(
        schedule_type=T.LOCAL_TIME, local_date=dt.date(2030, 6, 1), local_time=dt.time(9)
    )
    now = dt.datetime(2030, 5, 1, tzinfo=UTC)
    assert campaign_first_start(campaign=campaign, now=now) == dt.datetime(2030, 5, 31, 19, tzinfo=UTC)
    # Launched after that moment (but before the last zone gets there): start at once.
    late = dt.datetime(2030, 6, 1, 3, tzinfo=UTC)
    assert campaign_first_start(campaign=campaign, now=late) == late

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED)
    campaign.refresh_from_db()
    task = campaign_sync_schedule(campaign=campaign, now=now)
    assert task is not None and task.clocked.clocked_time == dt.datetime(2030, 5, 31, 19, tzinfo=UTC)


def test_local_time_through_launch() -> None:
    local_date = (timezone.now() + dt.timedelta(days=5)).date()
    campaign = launched(schedule_type=T.LOCAL_TIME, local_date=local_date, local_time=dt.time(8, 15))
    expected = dt.datetime.combine(local_date, dt.time(8, 15), tzinfo=UTC) - dt.timedelta(hours=14)
    assert campaign.periodic_task.clocked.clocked_time == expected


def test_recurring_campaigns_have_no_first_start() -> None:
    campaign = CampaignFactory(**recurring(schedule_type=T.DAILY))
    assert campaign_first_start(campaign=campaign) is None


# -- recurring: a CrontabSchedule in the campaign's time zone ----------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"schedule_type": T.DAILY}, ("30", "9", "*", "*", "*")),
        ({"schedule_type": T.WEEKLY, "weekdays": "1, 3,5"}, ("30", "9", "*", "*", "1,3,5")),
        ({"schedule_type": T.WEEKLY, "weekdays": "0"}, ("30", "9", "*", "*", "0")),
        (
            {"schedule_type": T.CRON, "cron_expression": "*/15 9-17 1 */2 1-5"},
            ("*/15", "9-17", "1", "*/2", "1-5"),
        ),
        ({"schedule_type": T.CRON, "cron_expression": "  0   7 * * *  "}, ("0", "7", "*", "*", "*")),
    ],
    ids=["daily", "weekly", "weekly-sunday", "cron", "cron-spaces"],
)
def test_recurring_schedules_become_crontabs_in_their_time_zone(
    fields: dict[str, Any], expected: tuple
) -> None:
    campaign = launched(**recurring(schedule_timezone="Europe/Berlin", **fields))
    task = campaign.periodic_task
    assert task is not None and task.enabled and not task.one_off and task.clocked is None
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == expected
    assert cron.timezone == BERLIN
    assert task.expires is None  # no end date


def test_the_end_date_is_the_tasks_expiry() -> None:
    ends_at = future(days=30)
    task = launched(**recurring(schedule_type=T.DAILY, ends_at=ends_at)).periodic_task
    assert task is not None and task.expires == ends_at


def test_campaigns_share_a_crontab_and_the_last_one_removes_it() -> None:
    first = launched(**recurring(schedule_type=T.DAILY))
    second = launched(**recurring(schedule_type=T.DAILY))
    assert first.periodic_task.crontab_id == second.periodic_task.crontab_id
    assert CrontabSchedule.objects.count() == 1

    from campaigns.services import campaign_return_to_draft

    campaign_return_to_draft(campaign=first, actor=None)
    assert CrontabSchedule.objects.count() == 1  # the second still uses it
    campaign_return_to_draft(campaign=second, actor=None)
    assert CrontabSchedule.objects.count() == 0
    assert PeriodicTask.objects.filter(task="delivery.tasks.plan_run").count() == 0


def test_next_occurrence_follows_the_time_zone_across_daylight_saving() -> None:
    campaign = CampaignFactory(
        **recurring(schedule_type=T.DAILY, local_time=dt.time(9), schedule_timezone="Europe/Berlin")
    )
    # Saturday 28 March 2026, before the clocks go forward: 09:00 CET = 08:00 UTC …
    assert campaign_next_occurrence(
        campaign=campaign, after=dt.datetime(2026, 3, 28, 7, tzinfo=UTC)
    ) == dt.datetime(2026, 3, 28, 8, tzinfo=UTC)
    # … and on Sunday 29 March, after them: 09:00 CEST = 07:00 UTC.
    assert campaign_next_occurrence(
        campaign=campaign, after=dt.datetime(2026, 3, 28, 8, tzinfo=UTC)
    ) == dt.datetime(2026, 3, 29, 7, tzinfo=UTC)


def test_next_occurrence_of_a_weekly_schedule_is_strictly_after() -> None:
    campaign = CampaignFactory(**recurring(schedule_type=T.WEEKLY, weekdays="1,3", local_time=dt.time(18)))
    monday_six = dt.datetime(2026, 6, 1, 18, tzinfo=UTC)  # a Monday
    assert (
        campaign_next_occurrence(campaign=campaign, after=monday_six - dt.timedelta(seconds=1)) == monday_six
    )
    assert campaign_next_occurrence(campaign=campaign, after=monday_six) == dt.datetime(
        2026, 6, 3, 18, tzinfo=UTC
    )
    one_off = CampaignFactory(schedule_type=T.AT, send_at=monday_six)
    assert campaign_next_occurrence(campaign=one_off, after=monday_six) is None


# -- editing a scheduled campaign re-syncs its task --------------------------------------------


def test_editing_the_send_time_moves_the_clocked_schedule() -> None:
    campaign = launched(schedule_type=T.AT, send_at=future(days=1))
    task_id, old_clocked = campaign.periodic_task_id, campaign.periodic_task.clocked_id

    campaign.send_at = future(days=2)
    campaign.save()
    campaign_save(campaign=campaign, actor=None)

    task = PeriodicTask.objects.get(pk=task_id)
    assert campaign.periodic_task_id == task_id  # the same task, edited
    assert task.clocked.clocked_time == campaign.send_at
    assert not ClockedSchedule.objects.filter(pk=old_clocked).exists()


def test_editing_a_recurring_campaign_moves_its_crontab() -> None:
    campaign = launched(**recurring(schedule_type=T.DAILY))
    old_crontab = campaign.periodic_task.crontab_id

    campaign.schedule_type = T.WEEKLY
    campaign.weekdays = "6"
    campaign.local_time = dt.time(10, 45)
    campaign.schedule_timezone = "America/New_York"
    campaign.ends_at = future(days=60)
    campaign.save()
    campaign_save(campaign=campaign, actor=None)

    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_week) == ("45", "10", "6")
    assert cron.timezone == zoneinfo.ZoneInfo("America/New_York")
    assert task.expires == campaign.ends_at
    assert not CrontabSchedule.objects.filter(pk=old_crontab).exists()


def test_editing_a_paused_campaign_keeps_its_task_disabled() -> None:
    campaign = campaign_pause(campaign=launched(schedule_type=T.AT, send_at=future(days=1)), actor=None)
    campaign.send_at = future(days=4)
    campaign.save()
    campaign_save(campaign=campaign, actor=None)
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.clocked.clocked_time == campaign.send_at
    assert task.enabled is False


def test_editing_a_draft_creates_no_task() -> None:
    campaign = CampaignFactory(schedule_type=T.AT, send_at=future(days=1))
    campaign_save(campaign=campaign, actor=None)
    assert campaign.periodic_task is None
    assert not PeriodicTask.objects.filter(task="delivery.tasks.plan_run").exists()


def test_an_edit_that_breaks_the_schedule_is_refused() -> None:
    campaign = launched(schedule_type=T.AT, send_at=future(days=1))
    campaign.send_at = timezone.now() - dt.timedelta(days=1)
    with pytest.raises(CampaignStateError, match="is in the past"):
        campaign_save(campaign=campaign, actor=None)


# -- every invalid schedule is refused with a message that says what to fix -------------


NOW = dt.datetime(2030, 1, 15, 12, tzinfo=UTC)

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "weekly without weekdays": (
        recurring(schedule_type=T.WEEKLY, weekdays=""),
        "Choose the weekdays of a weekly campaign as numbers, 0 = Sunday … 6 = Saturday",
    ),
    "weekday 7": (recurring(schedule_type=T.WEEKLY, weekdays="1,7"), "Choose the weekdays"),
    "weekday names": (recurring(schedule_type=T.WEEKLY, weekdays="mon,wed"), "Choose the weekdays"),
    "negative weekday": (recurring(schedule_type=T.WEEKLY, weekdays="-1"), "Choose the weekdays"),
    "daily without a time": (recurring(schedule_type=T.DAILY, local_time=None), "Choose the time of day"),
    "cron with four fields": (
        recurring(schedule_type=T.CRON, cron_expression="0 9 * *"),
        "The cron expression “0 9 * *” needs five fields: minute hour day-of-month month day-of-week",
    ),
    "cron with six fields": (
        recurring(schedule_type=T.CRON, cron_expression="0 0 9 * * *"),
        "needs five fields",
    ),
    "cron minute 61": (
        recurring(schedule_type=T.CRON, cron_expression="61 9 * * *"),
        "The schedule “61 9 * * *” is not valid: Invalid end range: 61 > 59.",
    ),
    "cron hour 25": (recurring(schedule_type=T.CRON, cron_expression="0 25 * * *"), "is not valid"),
    "cron day 32": (recurring(schedule_type=T.CRON, cron_expression="0 9 32 * *"), "is not valid"),
    "cron month 13": (recurring(schedule_type=T.CRON, cron_expression="0 9 * 13 *"), "is not valid"),
    "cron weekday 8": (recurring(schedule_type=T.CRON, cron_expression="0 9 * * 8"), "is not valid"),
    "cron step 0": (recurring(schedule_type=T.CRON, cron_expression="*/0 9 * * *"), "is not valid"),
    "cron words": (recurring(schedule_type=T.CRON, cron_expression="every day at nine am"), "is not valid"),
    "unknown time zone": (
        recurring(schedule_type=T.DAILY, schedule_timezone="Mars/Olympus"),
        "“Mars/Olympus” is not a time zone",
    ),
    "end date passed": (
        recurring(schedule_type=T.DAILY, ends_at=NOW - dt.timedelta(minutes=1)),
        "The end date of this recurring campaign has passed",
    ),
    "no tick before the end date": (
        recurring(schedule_type=T.DAILY, local_time=dt.time(9), ends_at=NOW + dt.timedelta(hours=3)),
        "This schedule sends nothing before its end date 2030-01-15 15:00 UTC",
    ),
    "at without a time": ({"schedule_type": T.AT, "send_at": None}, "Choose the date and time to send at."),
    "at in the past": (
        {"schedule_type": T.AT, "send_at": NOW - dt.timedelta(minutes=2)},
        "The send time 2030-01-15 11:58 UTC is in the past; choose a later one or “Send now”.",
    ),
    "local time without a date": (
        {"schedule_type": T.LOCAL_TIME, "local_date": None, "local_time": dt.time(9)},
        "Choose the local date and time to send at.",
    ),
    "local time passed everywhere": (
        {"schedule_type": T.LOCAL_TIME, "local_date": dt.date(2030, 1, 14), "local_time": dt.time(23, 59)},
        "2030-01-14 23:59 has passed in every time zone; choose a later date.",
    ),
    "one-off on repeat": (
        {"kind": Campaign.Kind.ONE_OFF, "schedule_type": T.DAILY, "local_time": dt.time(9)},
        "A one-off campaign is sent now, at a time or at a local time — not on repeat.",
    ),
    "recurring once": (
        {"kind": Campaign.Kind.RECURRING, "schedule_type": T.AT, "send_at": NOW + dt.timedelta(days=1)},
        "A recurring campaign needs a daily, weekly or cron schedule.",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_schedules_are_refused_with_a_message(case: str) -> None:
    fields, message = INVALID[case]
    # Unsaved: some of these (no send time…) the database itself refuses too.
    campaign = Campaign(name=case, **fields)
    with pytest.raises(ScheduleError) as refused:
        campaign_schedule_check(campaign=campaign, now=NOW)
    assert message in refused.value.message


VALID: dict[str, dict[str, Any]] = {
    "now": {"schedule_type": T.NOW},
    "at within the last minute (clock skew)": {
        "schedule_type": T.AT,
        "send_at": NOW - dt.timedelta(seconds=50),
    },
    "local time still ahead in the west": {
        "schedule_type": T.LOCAL_TIME,
        "local_date": dt.date(2030, 1, 15),
        "local_time": dt.time(0, 30),
    },
    "daily ending after its next tick": recurring(schedule_type=T.DAILY, ends_at=NOW + dt.timedelta(days=1)),
    "weekly": recurring(schedule_type=T.WEEKLY, weekdays="0,6"),
    "cron with names": recurring(schedule_type=T.CRON, cron_expression="0 9 * * mon-fri"),
    "triggered (no schedule of its own)": {
        "kind": Campaign.Kind.TRIGGERED,
        "schedule_type": T.AT,
        "send_at": None,
    },
}


@pytest.mark.parametrize("case", list(VALID))
def test_valid_schedules_pass(case: str) -> None:
    campaign_schedule_check(campaign=Campaign(name=case, **VALID[case]), now=NOW)


def test_crontab_fields_of_an_unsaved_campaign() -> None:
    campaign = Campaign(schedule_type=T.WEEKLY, weekdays="5", local_time=dt.time(7, 5))
    assert crontab_fields(campaign=campaign) == {
        "minute": "5",
        "hour": "7",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "5",
    }


def test_a_launch_with_an_invalid_schedule_lists_it_among_the_problems() -> None:
    campaign = CampaignFactory(**recurring(schedule_type=T.WEEKLY, weekdays="8"))
    VariantFactory(campaign=campaign)
    from campaigns.services import CampaignValidationError

    with pytest.raises(CampaignValidationError) as refused:
        campaign_launch(campaign=campaign, actor=None)
    assert refused.value.problems == [
        "Choose the weekdays of a weekly campaign as numbers, 0 = Sunday … 6 = Saturday, e.g. “1,3,5”."
    ]
