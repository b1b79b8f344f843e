"""dispatch_due: which rows are claimed, in what batches, how fast, and when runs close."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection, connections

from campaigns.models import Campaign, CampaignStatusChange
from delivery.dispatch import claim_instant, claim_token, dispatch_due
from delivery.models import Delivery, Run
from delivery.ratelimit import ProviderRateLimiter, provider_backoff_set
from tests.delivery.test_sending import (
    NOW,
    audience,
    engine_settings,
    queue,
    sending_campaign,
    start_run,
)
from tests.services import require, require_postgres

__all__ = ["engine_settings"]  # the autouse fixture, shared with test_sending

D = Delivery.Status
R = Run.Status
pytestmark = pytest.mark.django_db


class Batches(list[tuple[list[int], int]]):
    """Records what dispatch_due hands to ``enqueue`` (``send_batch.delay`` in production)."""

    def __call__(self, delivery_ids: list[int], claim: int) -> None:
        self.append((delivery_ids, claim))

    @property
    def ids(self) -> list[int]:
        return [pk for ids, _claim in self for pk in ids]


def dispatch(capture: Any, *, now: dt.datetime = NOW, **kwargs: Any) -> tuple[int, Batches]:
    batches = Batches()
    with capture(execute=True):
        claimed = dispatch_due(now=now, enqueue=batches, **kwargs)
    assert claimed == len(batches.ids)
    return claimed, batches


def test_claims_due_rows_of_sending_runs_only(django_capture_on_commit_callbacks: Any) -> None:
    run = start_run(sending_campaign())
    due = queue(run, audience(3))
    queue(run, audience(2), scheduled_for=NOW + dt.timedelta(seconds=1))  # not yet
    test_run = start_run(sending_campaign())
    Run.objects.filter(pk=test_run.pk).update(is_test=True)  # sent by send_test_run instead
    queue(test_run, audience(1))
    queue(start_run(sending_campaign(status=Campaign.Status.PAUSED)), audience(1))
    queue(start_run(sending_campaign(), status=R.PAUSED), audience(1))
    queue(start_run(sending_campaign(), status=R.PLANNING), audience(1))

    claimed, batches = dispatch(django_capture_on_commit_callbacks)

    assert claimed == 3
    assert sorted(batches.ids) == sorted(row.pk for row in due)
    assert batches[0][1] == claim_token(NOW) and claim_instant(batches[0][1]) == NOW
    rows = Delivery.objects.filter(pk__in=batches.ids)
    assert {(r.status, r.claimed_at) for r in rows} == {(D.SENDING, NOW)}
    assert Delivery.objects.filter(status=D.SENDING).count() == 3


def test_batches_are_enqueued_after_commit_in_chunks_of_500(django_capture_on_commit_callbacks: Any) -> None:
    run = start_run(sending_campaign())
    queue(run, audience(1100))
    batches = Batches()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert dispatch_due(now=NOW, enqueue=batches) == 1100
    assert batches == []  # nothing leaves before the claim commits
    for callback in callbacks:
        callback()

    assert [len(ids) for ids, _claim in batches] == [500, 500, 100]
    assert len(set(batches.ids)) == 1100
    assert dispatch_due(now=NOW, enqueue=batches) == 0  # nothing claimed twice


def test_campaign_throttle_per_minute(django_capture_on_commit_callbacks: Any) -> None:
    run = start_run(sending_campaign(throttle_per_minute=120))
    queue(run, audience(300))
    unthrottled = start_run(sending_campaign())
    queue(unthrottled, audience(200))

    first, _ = dispatch(django_capture_on_commit_callbacks)
    assert first == 120 + 200
    assert dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=30))[0] == 0
    # A minute after the first claim, the next 120.
    later, batches = dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=61))
    assert later == 120
    assert set(Delivery.objects.filter(pk__in=batches.ids).values_list("run_id", flat=True)) == {run.pk}


def test_provider_rate_is_shared_and_runs_take_turns(
    engine_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    engine_settings.NOTIFYHUB_PROVIDER_RATE = 500.0
    engine_settings.NOTIFYHUB_DISPATCH_SECONDS = 2.0  # 1,000 a window
    runs = [start_run(sending_campaign()) for _ in range(2)]
    for run in runs:
        queue(run, audience(800))

    claimed, batches = dispatch(django_capture_on_commit_callbacks)
    assert claimed == 1000
    per_run = Delivery.objects.filter(pk__in=batches.ids).values_list("run_id", flat=True)
    assert sorted(list(per_run).count(run.pk) for run in runs) == [500, 500]  # round-robin, not first come
    # Another dispatcher in the same window gets nothing; the next window has 1,000 again.
    assert dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=1))[0] == 0
    assert dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=2))[0] == 600


def test_high_priority_campaigns_go_first_when_the_budget_is_short(
    django_capture_on_commit_callbacks: Any,
) -> None:
    normal = start_run(sending_campaign())
    urgent = start_run(sending_campaign(priority=Campaign.Priority.HIGH))
    queue(normal, audience(5))
    queue(urgent, audience(5))

    _, batches = dispatch(django_capture_on_commit_callbacks, limiter=ProviderRateLimiter(rate=5, window=1))

    assert set(Delivery.objects.filter(pk__in=batches.ids).values_list("run_id", flat=True)) == {urgent.pk}


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_two_workers_dispatching_at_once_share_the_provider_rate(engine_settings: Any) -> None:
    require_postgres()
    require(
        connection.vendor == "postgresql",
        "concurrent dispatch needs the suite on PostgreSQL (DATABASE_URL=…)",
    )
    engine_settings.NOTIFYHUB_PROVIDER_RATE = 700.0
    engine_settings.NOTIFYHUB_DISPATCH_SECONDS = 1.0
    for _ in range(3):
        queue(start_run(sending_campaign()), audience(1000))
    barrier = threading.Barrier(2)
    results: list[Batches] = []
    errors: list[BaseException] = []

    def worker() -> None:
        batches = Batches()
        try:
            barrier.wait(timeout=10)
            dispatch_due(now=NOW, enqueue=batches)
            results.append(batches)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    first, second = (set(batches.ids) for batches in results)
    assert not first & second  # no row claimed by both
    assert len(first) + len(second) == 700  # exactly the window's budget, across both
    assert Delivery.objects.filter(status=D.SENDING).count() == 700


def test_nothing_is_dispatched_before_the_providers_retry_after(
    django_capture_on_commit_callbacks: Any,
) -> None:
    queue(start_run(sending_campaign()), audience(3))
    provider_backoff_set(until=NOW + dt.timedelta(seconds=30))

    assert dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=29))[0] == 0
    assert dispatch(django_capture_on_commit_callbacks, now=NOW + dt.timedelta(seconds=30))[0] == 3


def test_rows_outliving_their_lease_are_claimed_again(
    engine_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lease = dt.timedelta(seconds=engine_settings.NOTIFYHUB_SEND_LEASE_SECONDS)
    run = start_run(sending_campaign())
    stuck = queue(
        run, audience(2), status=D.SENDING, claimed_at=NOW - lease - dt.timedelta(seconds=1), attempts=2
    )
    busy = queue(run, audience(1), status=D.SENDING, claimed_at=NOW - lease + dt.timedelta(seconds=1))

    claimed, batches = dispatch(django_capture_on_commit_callbacks)

    assert claimed == 2 and sorted(batches.ids) == sorted(r.pk for r in stuck)
    rows = Delivery.objects.filter(pk__in=batches.ids)
    assert {(r.status, r.claimed_at, r.attempts, r.reason) for r in rows} == {
        (D.SENDING, NOW, 2, "lease_expired")
    }
    assert Delivery.objects.get(pk=busy[0].pk).claimed_at == NOW - lease + dt.timedelta(seconds=1)


def test_finished_runs_close_and_one_off_campaigns_complete(django_capture_on_commit_callbacks: Any) -> None:
    one_off = sending_campaign()
    done = start_run(one_off)
    queue(done, audience(2), status=D.SENT, sent_at=NOW)
    queue(done, audience(1), status=D.INVALID_TOKEN)  # a dead token is not a failure
    failing = start_run(
        sending_campaign(kind=Campaign.Kind.RECURRING, schedule_type=Campaign.ScheduleType.DAILY)
    )
    queue(failing, audience(1), status=D.SENT, sent_at=NOW)
    queue(failing, audience(1), status=D.FAILED, reason="unavailable")
    open_run = start_run(sending_campaign())
    queue(open_run, audience(1), status=D.SENT, sent_at=NOW)
    queue(open_run, audience(1), scheduled_for=NOW + dt.timedelta(hours=1))
    empty = start_run(sending_campaign())

    dispatch(django_capture_on_commit_callbacks)

    def state(run: Run) -> tuple[str, dt.datetime | None]:
        run.refresh_from_db()
        return run.status, run.finished_at

    assert state(done) == (R.COMPLETED, NOW)
    assert state(failing) == (R.PARTIALLY_FAILED, NOW)
    assert state(open_run) == (R.SENDING, None)
    assert state(empty) == (R.COMPLETED, NOW)
    one_off.refresh_from_db()
    assert one_off.status == Campaign.Status.COMPLETED
    assert (
        CampaignStatusChange.objects.filter(campaign=one_off, to_status=Campaign.Status.COMPLETED).count()
        == 1
    )
    assert Campaign.objects.get(pk=failing.campaign_id).status == Campaign.Status.RUNNING  # recurring goes on
    dispatch(django_capture_on_commit_callbacks)  # closing again changes nothing
    assert (
        CampaignStatusChange.objects.filter(campaign=one_off, to_status=Campaign.Status.COMPLETED).count()
        == 1
    )


def test_a_cancelled_campaign_suppresses_its_queue_and_cancels_its_run(
    django_capture_on_commit_callbacks: Any,
) -> None:
    campaign = sending_campaign()
    run = start_run(campaign)
    queue(run, audience(1), status=D.SENT, sent_at=NOW)
    queue(run, audience(2), scheduled_for=NOW + dt.timedelta(hours=1))
    in_flight = queue(run, audience(1), status=D.SENDING, claimed_at=NOW)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)

    assert dispatch(django_capture_on_commit_callbacks)[0] == 0
    assert Delivery.objects.filter(run=run, status=D.SUPPRESSED, reason="campaign_cancelled").count() == 2
    run.refresh_from_db()
    assert run.status == R.SENDING  # a batch is still in flight

    Delivery.objects.filter(pk=in_flight[0].pk).update(status=D.SUPPRESSED, reason="campaign_cancelled")
    dispatch(django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (R.CANCELLED, NOW)
