"""A launched campaign starts its run on time, once — with real beat and worker processes.

``celery beat`` (django-celery-beat's DatabaseScheduler) and ``celery worker`` run as
subprocesses against the test database (PostgreSQL, committed rows: a transactional
test) and Redis. The test launches a one-off campaign a few seconds ahead through
``campaign_launch`` and watches what a marketer would: no run before the send time,
then exactly one, the campaign running — and still one after beat had every chance
to fire again and the same task was delivered a second time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

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
from tests.services import require, require_postgres, require_redis

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable).parent / "python")
REDIS_DB = 13  # the smoke test uses 14, tests.services' default 15
LEAD = dt.timedelta(seconds=6)  # how far ahead the campaign is scheduled
STARTUP_TIMEOUT = 45.0
# Settings that must come from this test only, not from the suite's environment.
_DROPPED_PREFIXES = ("CELERY_", "NOTIFYHUB_", "DJANGO_")
_DROPPED = {"DATABASE_URL", "SECRET_KEY", "DEBUG", "CACHE_URL", "ALLOWED_HOSTS"}


def _database_url() -> str:
    """The test database (not the one named by DATABASE_URL): the processes must see our rows."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _with_db(url: str, number: int) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{number}"))


@dataclass
class Celeryd:
    """A running ``celery worker`` and ``celery beat``; their output goes to files."""

    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    broker_url: str

    def output(self, tail: int = 60) -> str:
        parts = []
        for name, path in self.logs.items():
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            parts.append(f"--- {name} (last {tail} lines) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    pytest.fail(
                        f"{name} exited (rc={process.returncode}) while waiting for {what}\n{self.output()}"
                    )
            if check():
                return
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.output()}", pytrace=False)

    def stop(self) -> None:
        """Whatever happened, nothing outlives the test: SIGTERM, then SIGKILL."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def celeryd(transactional_db: None, tmp_path: Path) -> Iterator[Celeryd]:
    require_postgres()
    redis_url = require_redis()
    require(
        connection.vendor == "postgresql",
        "worker and beat share the test database only on PostgreSQL: run with DATABASE_URL=postgres://…",
    )
    broker_url = _with_db(redis_url, REDIS_DB)
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="notifyhub.settings",
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=broker_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        NOTIFYHUB_VAR_DIR=str(tmp_path / "var"),
        NOTIFYHUB_HEARTBEAT_SECONDS="1",
        CACHE_URL=f"filecache://{tmp_path / 'cache'}",
        PYTHONUNBUFFERED="1",
    )
    commands = {
        "worker": [
            PYTHON, "-m", "celery", "-A", "notifyhub", "worker",
            "--queues", "default,plan,send,events", "--pool", "solo", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"campaign-test-{secrets.token_hex(4)}@%h",
        ],
        "beat": [
            PYTHON, "-m", "celery", "-A", "notifyhub", "beat",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval", "1", "--loglevel", "INFO", "--pidfile=",
        ],
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    stack = Celeryd(processes=processes, logs=logs, broker_url=broker_url)
    try:
        for name, command in commands.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        # Beat → broker → worker → database: the heartbeat row proves all of it works.
        stack.wait_for(
            "the heartbeat (beat and worker up)",
            lambda: Heartbeat.objects.filter(name=HEARTBEAT_NAME).exists(),
            STARTUP_TIMEOUT,
        )
        yield stack
    finally:
        stack.stop()
        broker.flushdb()
        broker.close()


def _runs(campaign: Campaign) -> list[Run]:
    return list(Run.objects.filter(campaign=campaign, is_test=False))


def _plan_run_done(stack: Celeryd) -> int:
    text = stack.logs["worker"].read_text(errors="replace") if stack.logs["worker"].exists() else ""
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
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING

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
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING
