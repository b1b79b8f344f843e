"""Starting a campaign's run when beat fires: at or after its time, once, and only if it should.

``run_start`` is what ``plan_run`` (the beat task) calls. Beat may fire twice (two beat
processes, a redelivered task), early by a clock skew, or for a campaign that was
paused or cancelled meanwhile; each case must end with the right number of runs: one,
or none.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import Campaign, CampaignStatusChange
from campaigns.services import (
    campaign_cancel,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_return_to_draft,
    campaign_submit_for_review,
)
from delivery.models import Delivery, Run
from delivery.services import run_start
from delivery.tasks import plan_run
from tests.factories import CampaignFactory, VariantFactory
from tests.services import require, require_postgres

S = Campaign.Status
T = Campaign.ScheduleType
UTC = dt.UTC


def launch(**fields: Any) -> Campaign:
    campaign = CampaignFactory(**fields)
    VariantFactory(campaign=campaign, name="A")
    return campaign_launch(campaign=campaign, actor=None)


def send_time() -> dt.datetime:
    return (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)


def one_off(send_at: dt.datetime) -> Campaign:
    return launch(schedule_type=T.AT, send_at=send_at)


def daily(**fields: Any) -> Campaign:
    """Every day at 09:00 UTC."""
    return launch(kind=Campaign.Kind.RECURRING, schedule_type=T.DAILY, local_time=dt.time(9), **fields)


def status(campaign: Campaign) -> str:
    return Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk)


def runs(campaign: Campaign) -> list[dt.datetime]:
    return list(
        Run.objects.filter(campaign=campaign, is_test=False)
        .order_by("occurrence")
        .values_list("occurrence", flat=True)
    )


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2030, 1, day, hour, minute, second, tzinfo=UTC)


# -- one-off campaigns -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("early", [dt.timedelta(hours=1), dt.timedelta(seconds=3)])
def test_a_run_is_not_started_before_its_time(early: dt.timedelta) -> None:
    send_at = send_time()
    campaign = one_off(send_at)
    assert run_start(campaign_id=campaign.pk, now=send_at - early) is None
    assert runs(campaign) == []
    assert status(campaign) == S.SCHEDULED
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled


@pytest.mark.django_db
@pytest.mark.parametrize(
    "delay",
    [dt.timedelta(0), -dt.timedelta(seconds=1), dt.timedelta(minutes=10)],
    ids=["on time", "a clock one second behind beat's", "late"],
)
def test_a_run_starts_at_or_after_its_time_for_its_clocked_moment(delay: dt.timedelta) -> None:
    send_at = send_time()
    campaign = one_off(send_at)

    run = run_start(campaign_id=campaign.pk, now=send_at + delay)

    assert run is not None
    assert (run.campaign_id, run.occurrence, run.is_test, run.status) == (
        campaign.pk,
        send_at,
        False,
        "pending",
    )
    assert status(campaign) == S.RUNNING
    change = CampaignStatusChange.objects.filter(campaign=campaign).first()
    assert (change.from_status, change.to_status, change.actor, change.note) == (
        S.SCHEDULED,
        S.RUNNING,
        None,
        "run started",
    )
    # A one-off that started leaves nothing for beat to do.
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


@pytest.mark.django_db
def test_a_one_off_never_gets_a_second_run() -> None:
    send_at = send_time()
    campaign = one_off(send_at)
    assert run_start(campaign_id=campaign.pk, now=send_at) is not None
    changes = CampaignStatusChange.objects.count()

    for later in (dt.timedelta(seconds=1), dt.timedelta(minutes=5), dt.timedelta(days=2)):
        assert run_start(campaign_id=campaign.pk, now=send_at + later) is None

    assert runs(campaign) == [send_at]
    assert CampaignStatusChange.objects.count() == changes


@pytest.mark.django_db
def test_a_paused_and_resumed_running_campaign_gets_no_second_run() -> None:
    send_at = send_time()
    campaign = one_off(send_at)
    run_start(campaign_id=campaign.pk, now=send_at)
    campaign_resume(
        campaign=campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk), actor=None), actor=None
    )
    assert run_start(campaign_id=campaign.pk, now=send_at + dt.timedelta(minutes=1)) is None
    assert len(runs(campaign)) == 1


def _paused(campaign: Campaign) -> Campaign:
    return campaign_pause(campaign=campaign, actor=None)


def _cancelled(campaign: Campaign) -> Campaign:
    return campaign_cancel(campaign=campaign, actor=None)


def _back_to_draft(campaign: Campaign) -> Campaign:
    return campaign_return_to_draft(campaign=campaign, actor=None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make", [_paused, _cancelled, _back_to_draft], ids=["paused", "cancelled", "back to draft"]
)
def test_no_run_for_a_campaign_stopped_after_launch(make: Any) -> None:
    send_at = send_time()
    campaign = make(one_off(send_at))
    state = status(campaign)

    assert run_start(campaign_id=campaign.pk, now=send_at + dt.timedelta(seconds=5)) is None

    assert runs(campaign) == []
    assert status(campaign) == state


@pytest.mark.django_db
@pytest.mark.parametrize("submit", [False, True], ids=["draft", "in review"])
def test_no_run_for_a_campaign_never_launched(submit: bool) -> None:
    campaign = CampaignFactory(schedule_type=T.NOW)
    VariantFactory(campaign=campaign)
    if submit:
        campaign_submit_for_review(campaign=campaign, actor=None)
    assert run_start(campaign_id=campaign.pk) is None
    assert runs(campaign) == []


@pytest.mark.django_db
def test_an_unknown_campaign_is_ignored() -> None:
    assert run_start(campaign_id=987654) is None


@pytest.mark.django_db
def test_test_sends_do_not_count_as_the_run() -> None:
    send_at = send_time()
    campaign = one_off(send_at)
    Run.objects.create(campaign=campaign, occurrence=send_at, is_test=True)
    Run.objects.create(campaign=campaign, occurrence=send_at, is_test=True)  # tests may share a moment

    assert run_start(campaign_id=campaign.pk, now=send_at) is not None
    assert runs(campaign) == [send_at]


@pytest.mark.django_db
def test_the_database_refuses_a_second_run_for_the_same_moment() -> None:
    send_at = send_time()
    campaign = CampaignFactory()
    Run.objects.create(campaign=campaign, occurrence=send_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.create(campaign=campaign, occurrence=send_at)


@pytest.mark.django_db
def test_the_beat_task_starts_a_send_now_campaign() -> None:
    campaign = launch(schedule_type=T.NOW)
    result = plan_run.apply(kwargs={"campaign_id": campaign.pk})
    assert result.successful()
    run = Run.objects.get(campaign=campaign)
    # The task returns the rows it planned: one per active device of the reachable audience.
    assert result.result == Delivery.objects.filter(run=run).count()
    assert run.deliveries.count() == result.result
    assert plan_run.apply(kwargs={"campaign_id": campaign.pk}).result == 0  # fired twice: one run
    assert Run.objects.filter(campaign=campaign).count() == 1


# -- recurring campaigns: one run per tick -----------------------------------------------------


@pytest.mark.django_db
def test_every_minute_one_run_per_minute() -> None:
    campaign = launch(kind=Campaign.Kind.RECURRING, schedule_type=T.CRON, cron_expression="* * * * *")

    assert run_start(campaign_id=campaign.pk, now=at(1, 10, 0, 5)).occurrence == at(1, 10)
    assert run_start(campaign_id=campaign.pk, now=at(1, 10, 0, 40)) is None  # the same minute
    assert run_start(campaign_id=campaign.pk, now=at(1, 10, 1, 1)).occurrence == at(1, 10, 1)
    assert run_start(campaign_id=campaign.pk, now=at(1, 10, 1, 50)) is None

    assert runs(campaign) == [at(1, 10), at(1, 10, 1)]
    assert status(campaign) == S.RUNNING
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled  # beat keeps firing


@pytest.mark.django_db
def test_a_recurring_run_is_for_its_tick_not_for_when_the_task_arrived() -> None:
    campaign = daily()

    assert run_start(campaign_id=campaign.pk, now=at(1, 9, 0, 3)).occurrence == at(1, 9)
    # The same task redelivered 25 minutes later (a worker died before acking it).
    assert run_start(campaign_id=campaign.pk, now=at(1, 9, 25)) is None
    # Not a tick: nothing is due at 14:00.
    assert run_start(campaign_id=campaign.pk, now=at(1, 14)) is None
    # A clock one second behind beat's still starts the next day's run, for 09:00.
    assert run_start(campaign_id=campaign.pk, now=at(2, 8, 59, 59)).occurrence == at(2, 9)
    assert run_start(campaign_id=campaign.pk, now=at(2, 9, 0, 30)) is None

    assert runs(campaign) == [at(1, 9), at(2, 9)]


@pytest.mark.django_db
def test_a_task_arriving_long_after_its_tick_starts_nothing() -> None:
    campaign = daily()
    assert run_start(campaign_id=campaign.pk, now=at(1, 10, 30)) is None
    assert runs(campaign) == []
    assert status(campaign) == S.SCHEDULED


@pytest.mark.django_db
def test_the_last_tick_before_the_end_date_completes_the_campaign() -> None:
    campaign = daily(ends_at=at(3, 12))

    run_start(campaign_id=campaign.pk, now=at(2, 9))
    assert status(campaign) == S.RUNNING  # 3 January, 09:00 is still to come
    last = run_start(campaign_id=campaign.pk, now=at(3, 9))

    assert last is not None and last.occurrence == at(3, 9)
    assert runs(campaign) == [at(2, 9), at(3, 9)]
    assert status(campaign) == S.COMPLETED
    assert (
        CampaignStatusChange.objects.filter(campaign=campaign).first().note == "last run before the end date"
    )
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert (task.enabled, task.expires) == (False, at(3, 12))
    assert run_start(campaign_id=campaign.pk, now=at(4, 9)) is None


@pytest.mark.django_db
def test_a_recurring_campaign_called_after_its_end_date_completes_without_a_run() -> None:
    campaign = daily(ends_at=at(3, 12))
    run_start(campaign_id=campaign.pk, now=at(1, 9))

    assert run_start(campaign_id=campaign.pk, now=at(3, 12)) is None

    assert runs(campaign) == [at(1, 9)]
    assert status(campaign) == S.COMPLETED
    change = CampaignStatusChange.objects.filter(campaign=campaign).first()
    assert (change.from_status, change.to_status, change.note) == (S.RUNNING, S.COMPLETED, "end date reached")
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


# -- concurrency: two workers get the same task at the same moment ---------------------------


def _start_concurrently(campaign_id: int, now: dt.datetime, workers: int = 4) -> list[Run | None]:
    barrier = threading.Barrier(workers)
    results: list[Run | None] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(run_start(campaign_id=campaign_id, now=now))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == workers
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
@pytest.mark.parametrize("kind", ["one-off", "every minute"])
def test_concurrent_starts_make_one_run(kind: str) -> None:
    require_postgres()
    require(
        connection.vendor == "postgresql",
        "concurrent run starts need the suite on PostgreSQL (DATABASE_URL=postgres://…)",
    )
    if kind == "one-off":
        now = send_time()
        campaign = one_off(now)
    else:
        now = at(1, 10, 0, 10)
        campaign = launch(kind=Campaign.Kind.RECURRING, schedule_type=T.CRON, cron_expression="* * * * *")

    results = _start_concurrently(campaign.pk, now)

    started = [run for run in results if run is not None]
    assert len(started) == 1
    assert Run.objects.filter(campaign=campaign, is_test=False).count() == 1
    assert status(campaign) == S.RUNNING
    assert CampaignStatusChange.objects.filter(campaign=campaign, to_status=S.RUNNING).count() == 1
