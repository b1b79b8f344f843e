"""A launched campaign starts its run on time, once — with real beat and worker processes.

``celery beat`` (django-celery-beat's DatabaseScheduler) and ``celery worker`` run as
subprocesses against the test database (PostgreSQL, committed rows: a transactional
test) and Redis. The test launches a one-off campaign a few seconds ahead through
``campaign_launch`` and watches what a marketer would: no run before the send time,
then exactly one, the campaign running (or done) — and still one after beat had every chance
to fire again and the same task was delivered a second time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaign_launch
from delivery.models import Heartbeat, Run
from delivery.selectors import HEARTBEAT_NAME
from tests.factories import CampaignFactory, VariantFactory
from tests.processes import STARTUP_TIMEOUT, Processes, celery_environ, test_database_url, with_url_path
from tests.services import require, require_postgres, require_redis

pytestmark = pytest.mark.integration

REDIS_DB = 13  # the smoke test uses 14, tests.services' default 15
LEAD = dt.timedelta(seconds=6)  # how far ahead the campaign is scheduled
STARTED = {Campaign.Status.RUNNING, Campaign.Status.COMPLETED}


class Celeryd(Processes):
    """A running ``celery worker`` and ``celery beat`` (see tests.processes)."""

    broker_url: str = ""


@pytest.fixture
def celeryd(transactional_db: None, tmp_path: Path) -> Iterator[Celeryd]:
    require_postgres()
    redis_url = require_redis()
    require(
        connection.vendor == "postgresql",
        "worker and beat share the test database only on PostgreSQL: run with DATABASE_URL=postgres://…",
    )
    broker_url = with_url_path(redis_url, REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    env = celery_environ(tmp_path, broker_url=broker_url, database_url=test_database_url())
    stack = Celeryd(tmp_path, env)
    stack.broker_url = broker_url
    try:
        stack.start_worker("worker", pool="solo", concurrency=1)
        stack.start_beat("beat")
        # Beat → broker → worker → database: the heartbeat row proves all of it works.
        stack.wait_for(
            "the heartbeat (beat and worker up)",
            lambda: Heartbeat.objects.filter(name=HEARTBEAT_NAME).exists(),
            STARTUP_TIMEOUT,
        )
        yield stack
    finally:
        stack.stop_all()
        broker.flushdb()
        broker.close()


def _runs(campaign: Campaign) -> list[Run]:
    return list(Run.objects.filter(campaign=campaign, is_test=False))


def _plan_run_done(stack: Celeryd) -> int:
    text = stack.processes["worker"].text()
    return sum(1 for line in text.splitlines() if "delivery.tasks.plan_run[" in line and "succeeded" in line)


def test_a_launched_campaign_starts_one_run_at_its_time(celeryd: Celeryd) -> None:
    send_at = timezone.now() + LEAD
    campaign = CampaignFactory(schedule_type=Campaign.ScheduleType.AT, send_at=send_at)
    VariantFactory(campaign=campaign)
    campaign = campaign_launch(campaign=campaign, actor=None)
    assert campaign.status == Campaign.Status.SCHEDULED
    task = campaign.periodic_task
    assert task is not None and task.enabled and task.clocked.clocked_time == send_at

    # Before the send time: nothing (checked until just before it).
    while timezone.now() < send_at - dt.timedelta(milliseconds=500):
        assert _runs(campaign) == [], f"a run started before {send_at:%H:%M:%S.%f}\n{celeryd.output()}"
        time.sleep(0.25)

    # After it: exactly one run, for that moment, and the campaign is running.
    celeryd.wait_for("the campaign's run", lambda: bool(_runs(campaign)), LEAD.total_seconds() + 10)
    [run] = _runs(campaign)
    assert run.created_at >= send_at
    assert run.occurrence == send_at
    # Running — or already completed: the delivery engine finishes an empty audience at once.
    assert Campaign.objects.get(pk=campaign.pk).status in STARTED

    # The same task delivered a second time (a redelivery, a second beat) changes nothing.
    probe = Celery("campaign-test-probe")
    # An explicit connection: CELERY_BROKER_URL (the suite's broker) would win over broker=.
    with probe.connection_for_write(celeryd.broker_url) as broker:
        probe.send_task(
            "delivery.tasks.plan_run", kwargs={"campaign_id": campaign.pk}, queue="plan", connection=broker
        )
    probe.close()
    celeryd.wait_for("the second plan_run to be handled", lambda: _plan_run_done(celeryd) >= 2, 10)

    # Give beat every chance to fire it again.
    time.sleep(8)
    assert len(_runs(campaign)) == 1, celeryd.output()
    assert Run.objects.filter(campaign=campaign).count() == 1
    assert Campaign.objects.get(pk=campaign.pk).status in STARTED
