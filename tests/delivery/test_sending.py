"""send_batch: send-time suppression, rendering, outcomes, retries, dead tokens, fatal errors.

Rows are made directly (the planner is tested elsewhere) and claimed the way
``dispatch_due`` claims them. Provider faults come from a tiny fake backend that
implements the PushBackend protocol; the outbox backend stands in for a provider that
accepts everything. The real firebase-admin path is tested against the FCM stub in
the backend's own tests.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from audiences.models import Device, Subscriber, Topic, TopicPreference
from audiences.services import ConsentContext, subscriber_update_preferences
from campaigns.models import Campaign
from campaigns.selectors import campaign_audience
from delivery import sending
from delivery.backends import PushMessage, SendResult, collapse_key_for
from delivery.dispatch import claim_token, deliveries_claim, dispatch_due
from delivery.models import Delivery, OutboxMessage, Run
from delivery.ratelimit import provider_backoff_until
from delivery.selectors import run_delivery_counts
from delivery.sending import BatchOutcome, retry_delay, send_batch
from tests.factories import CampaignFactory, TopicFactory, VariantFactory
from tests.services import require, require_postgres

D = Delivery.Status
R = Run.Status
UTC = dt.UTC
# A Wednesday, 13:00 UTC: 15:00 in Berlin, 06:00 in Los Angeles, 01:00 (Thursday) in Auckland.
NOW = dt.datetime(2030, 6, 12, 13, 0, tzinfo=UTC)


# --- Shared helpers (test_dispatch imports them) ---------------------------------------


@pytest.fixture(autouse=True)
def engine_settings(settings: Any) -> Any:
    """A private cache per test (rate windows, backoff), no quiet hours unless a test sets them."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"delivery-test-{uuid.uuid4().hex}",
        }
    }
    settings.NOTIFYHUB_QUIET_HOURS = ""
    settings.NOTIFYHUB_CAP_PER_DAY = 3
    settings.NOTIFYHUB_CAP_PER_WEEK = 10
    settings.NOTIFYHUB_SEND_MAX_ATTEMPTS = 5
    settings.NOTIFYHUB_SEND_LEASE_SECONDS = 300
    settings.NOTIFYHUB_PROVIDER_RATE = 10_000.0
    settings.NOTIFYHUB_DISPATCH_SECONDS = 2.0
    settings.NOTIFYHUB_PUSH_BACKEND = "outbox"
    return settings


def sending_campaign(**fields: Any) -> Campaign:
    """A running campaign with one English variant "A"."""
    fields.setdefault("status", Campaign.Status.RUNNING)
    campaign = CampaignFactory(**fields)
    VariantFactory(campaign=campaign, name="A")
    return campaign


def start_run(campaign: Campaign, *, status: str = R.SENDING, occurrence: dt.datetime = NOW) -> Run:
    return Run.objects.create(campaign=campaign, occurrence=occurrence, status=status, planned_at=occurrence)


def audience(n: int, **fields: Any) -> list[Device]:
    """``n`` subscribers with one active device each (bulk-created)."""
    fields.setdefault("timezone", "Europe/Berlin")
    fields.setdefault("first_name", "Ada")
    tag = uuid.uuid4().hex[:8]
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(external_id=f"s-{tag}-{i}", language="en", **fields) for i in range(n)
    )
    return Device.objects.bulk_create(
        Device(subscriber=s, token=f"tok-{tag}-{i}", platform=Device.Platform.ANDROID)
        for i, s in enumerate(subscribers)
    )


def queue(
    run: Run, devices: Sequence[Device], *, scheduled_for: dt.datetime = NOW, **fields: Any
) -> list[Delivery]:
    variant = run.campaign.variants.order_by("name").first()
    fields.setdefault("variant", variant)
    return Delivery.objects.bulk_create(
        Delivery(run=run, device=d, subscriber_id=d.subscriber_id, scheduled_for=scheduled_for, **fields)
        for d in devices
    )


def history(subscriber_id: int, *, sent_at: dt.datetime, topic: Topic | None = None, devices: int = 1) -> Run:
    """An earlier run of another campaign that reached this subscriber (on ``devices`` devices)."""
    campaign = sending_campaign(**({"topic": topic} if topic else {}))
    run = start_run(campaign, status=R.COMPLETED, occurrence=sent_at)
    for device in Device.objects.filter(subscriber_id=subscriber_id)[:devices]:
        Delivery.objects.create(
            run=run,
            device=device,
            subscriber_id=subscriber_id,
            scheduled_for=sent_at,
            status=D.SENT,
            sent_at=sent_at,
        )
    return run


def claim(run: Run, *, now: dt.datetime = NOW, limit: int = 500) -> tuple[list[int], int]:
    """Claim due rows the way dispatch_due does; return (ids, claim token)."""
    return deliveries_claim(run_id=run.pk, limit=limit, now=now), claim_token(now)


def send(run: Run, *, now: dt.datetime = NOW, backend: Any = None) -> BatchOutcome:
    ids, token = claim(run, now=now)
    return send_batch(delivery_ids=ids, claim=token, backend=backend, now=now)


def statuses(run: Run) -> dict[int, tuple[str, str]]:
    """device id → (status, reason)."""
    return {d.device_id: (d.status, d.reason) for d in Delivery.objects.filter(run=run)}


class FakeBackend:
    """A PushBackend answering each message with ``answer(message)`` (default: accepted)."""

    def __init__(self, answer: Callable[[PushMessage], SendResult] | None = None) -> None:
        self.answer = answer or (lambda m: SendResult(ok=True, message_id=f"fake-{m.delivery_id}"))
        self.calls: list[list[PushMessage]] = []

    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        self.calls.append(list(messages))
        return [self.answer(m) for m in messages]

    @property
    def messages(self) -> list[PushMessage]:
        return [m for call in self.calls for m in call]


def failing(code: str, **fields: Any) -> FakeBackend:
    return FakeBackend(
        lambda m: SendResult(ok=False, error_code=code, error=f"{code} from the stub", **fields)
    )


# --- Sending ------------------------------------------------------------------------


@pytest.mark.django_db
def test_sends_rendered_messages_and_records_them() -> None:
    run = start_run(sending_campaign())
    devices = audience(3, first_name="Grace")
    queue(run, devices)

    outcome = send(run)

    assert outcome.sent == 3 and outcome.skipped == 0
    rows = list(Delivery.objects.filter(run=run))
    assert {(r.status, r.reason, r.sent_at) for r in rows} == {(D.SENT, "", NOW)}
    assert all(r.provider_message_id.startswith("outbox-") for r in rows)
    inbox = list(OutboxMessage.objects.filter(delivery__run=run))
    assert {m.title for m in inbox} == {"Hi Grace"}
    payload = inbox[0].payload["message"]
    assert payload["android"]["collapse_key"] == collapse_key_for(run_id=run.pk)


@pytest.mark.django_db
def test_every_suppression_reason_is_recorded() -> None:
    topic = TopicFactory(default_opt_in=False)
    run = start_run(sending_campaign(topic=topic))
    d = {
        name: audience(1)[0]
        for name in (
            "ok",
            "opt_out",
            "topic_out",
            "topic_default",
            "inactive",
            "moved",
            "erased",
            "paused",
            "pause_over",
        )
    }
    TopicPreference.objects.create(subscriber_id=d["ok"].subscriber_id, topic=topic, opted_in=True)
    for name in ("opt_out", "inactive", "moved", "erased", "paused", "pause_over"):
        TopicPreference.objects.create(subscriber_id=d[name].subscriber_id, topic=topic, opted_in=True)
    TopicPreference.objects.create(subscriber_id=d["topic_out"].subscriber_id, topic=topic, opted_in=False)
    Subscriber.objects.filter(pk=d["opt_out"].subscriber_id).update(push_opt_in=False)
    Subscriber.objects.filter(pk=d["erased"].subscriber_id).update(erased_at=NOW - dt.timedelta(days=1))
    Subscriber.objects.filter(pk=d["paused"].subscriber_id).update(paused_until=NOW + dt.timedelta(days=1))
    Subscriber.objects.filter(pk=d["pause_over"].subscriber_id).update(
        paused_until=NOW - dt.timedelta(hours=1)
    )
    Device.objects.filter(pk=d["inactive"].pk).update(
        is_active=False, invalidated_at=NOW, invalidation_reason=Device.InvalidationReason.REMOVED
    )
    queue(run, list(d.values()))
    # The token moved to someone else after planning: never send them this person's message.
    Device.objects.filter(pk=d["moved"].pk).update(subscriber_id=d["ok"].subscriber_id)

    outcome = send(run)

    assert statuses(run) == {
        d["ok"].pk: (D.SENT, ""),
        d["pause_over"].pk: (D.SENT, ""),
        d["opt_out"].pk: (D.SUPPRESSED, "push_opt_out"),
        d["topic_out"].pk: (D.SUPPRESSED, "topic_opt_out"),
        d["topic_default"].pk: (D.SUPPRESSED, "topic_opt_out"),
        d["inactive"].pk: (D.SUPPRESSED, "device_inactive"),
        d["moved"].pk: (D.SUPPRESSED, "device_reassigned"),
        d["erased"].pk: (D.SUPPRESSED, "subscriber_erased"),
        d["paused"].pk: (D.SUPPRESSED, "subscriber_paused"),
    }
    assert outcome.sent == 2 and sum(outcome.suppressed.values()) == 7


@pytest.mark.django_db
def test_cancelled_campaign_suppresses_and_paused_campaign_releases_untouched() -> None:
    cancelled = sending_campaign()
    paused = sending_campaign()
    run_c, run_p = start_run(cancelled), start_run(paused)
    queue(run_c, audience(2))
    queue(run_p, audience(2), attempts=2, reason="capped_daily")
    ids_c, token = claim(run_c)
    ids_p, _ = claim(run_p)
    Campaign.objects.filter(pk=cancelled.pk).update(status=Campaign.Status.CANCELLED)
    Campaign.objects.filter(pk=paused.pk).update(status=Campaign.Status.PAUSED)

    outcome = send_batch(delivery_ids=ids_c + ids_p, claim=token, now=NOW)

    assert set(statuses(run_c).values()) == {(D.SUPPRESSED, "campaign_cancelled")}
    rows = list(Delivery.objects.filter(run=run_p))
    assert {(r.status, r.reason, r.attempts, r.scheduled_for) for r in rows} == {
        (D.QUEUED, "capped_daily", 2, NOW)
    }
    assert outcome.released == 2 and outcome.suppressed["campaign_cancelled"] == 2
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_paused_run_releases_its_rows() -> None:
    run = start_run(sending_campaign())
    queue(run, audience(2))
    ids, token = claim(run)
    Run.objects.filter(pk=run.pk).update(status=R.PAUSED)

    outcome = send_batch(delivery_ids=ids, claim=token, now=NOW)

    assert outcome.released == 2 and outcome.sent == 0
    assert set(statuses(run).values()) == {(D.QUEUED, "")}


@pytest.mark.django_db
def test_control_group_and_empty_renders_are_suppressed_not_sent() -> None:
    campaign = sending_campaign()
    nameless = VariantFactory(
        campaign=campaign, name="N", title_en="{{ subscriber.first_name }}", body_en="Hi"
    )
    run = start_run(campaign)
    control, normal = audience(2)
    (blank,) = audience(1, first_name="")
    queue(run, [control], is_control=True, variant=None)
    queue(run, [blank], variant=nameless)
    queue(run, [normal])
    backend = FakeBackend()

    send(run, backend=backend)

    assert statuses(run) == {
        control.pk: (D.SUPPRESSED, "control"),
        blank.pk: (D.SUPPRESSED, "render_empty"),
        normal.pk: (D.SENT, ""),
    }
    assert [m.device_id for m in backend.messages] == [normal.pk]
    # The control row keeps when it would have been sent (conversion attribution).
    assert Delivery.objects.get(device=control).claimed_at is not None


# --- Consent: an opt-out stops every batch claimed after it ----------------------------


@pytest.mark.django_db
def test_opt_out_between_claim_and_send_stops_the_message(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = start_run(sending_campaign())
    stays, leaves = audience(2)
    # A second device of the leaving subscriber, due ten minutes later (a later batch).
    later = Device.objects.create(subscriber_id=leaves.subscriber_id, token="later-device", platform="ios")
    queue(run, [stays, leaves])
    queue(run, [later], scheduled_for=NOW + dt.timedelta(minutes=10))
    batches: list[tuple[list[int], int]] = []

    with django_capture_on_commit_callbacks(execute=True):
        dispatch_due(now=NOW, enqueue=lambda ids, token: batches.append((ids, token)))
    subscriber = Subscriber.objects.get(pk=leaves.subscriber_id)
    subscriber_update_preferences(
        subscriber=subscriber, context=ConsentContext(source="preference_center"), push_opt_in=False
    )
    send_batch(delivery_ids=batches[0][0], claim=batches[0][1], now=NOW)

    assert statuses(run)[stays.pk] == (D.SENT, "")
    assert statuses(run)[leaves.pk] == (D.SUPPRESSED, "push_opt_out")

    later_now = NOW + dt.timedelta(minutes=11)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_due(now=later_now, enqueue=lambda ids, token: batches.append((ids, token)))
    send_batch(delivery_ids=batches[1][0], claim=batches[1][1], now=later_now)
    assert statuses(run)[later.pk] == (D.SUPPRESSED, "push_opt_out")
    assert OutboxMessage.objects.filter(device_id__in=[leaves.pk, later.pk]).count() == 0


@pytest.mark.django_db
def test_topic_opt_out_between_claim_and_send_stops_the_message() -> None:
    run = start_run(sending_campaign())
    (device,) = audience(1)
    queue(run, [device])
    ids, token = claim(run)
    subscriber_update_preferences(
        subscriber=Subscriber.objects.get(pk=device.subscriber_id),
        context=ConsentContext(source="api"),
        topics={run.campaign.topic: False},
    )

    send_batch(delivery_ids=ids, claim=token, now=NOW)

    assert statuses(run) == {device.pk: (D.SUPPRESSED, "topic_opt_out")}


# --- Quiet hours ----------------------------------------------------------------------


def _zones() -> dict[str, Device]:
    return {
        tz: audience(1, timezone=tz)[0] for tz in ("Europe/Berlin", "America/Los_Angeles", "Pacific/Auckland")
    }


@pytest.mark.django_db
def test_quiet_hours_defer_until_the_window_ends_in_each_time_zone(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    run = start_run(sending_campaign(quiet_hours_policy=Campaign.QuietHoursPolicy.DEFER))
    by_zone = _zones()
    queue(run, list(by_zone.values()))

    outcome = send(run)

    rows = {r.device_id: r for r in Delivery.objects.filter(run=run)}
    berlin, la, auckland = (
        rows[by_zone[tz].pk] for tz in ("Europe/Berlin", "America/Los_Angeles", "Pacific/Auckland")
    )
    assert (berlin.status, berlin.reason) == (D.SENT, "")  # 15:00 local
    # 06:00 in Los Angeles (PDT): waits until 08:00 local = 15:00 UTC.
    assert (la.status, la.reason, la.scheduled_for) == (
        D.QUEUED,
        "quiet_hours_deferred",
        dt.datetime(2030, 6, 12, 15, 0, tzinfo=UTC),
    )
    # 01:00 in Auckland (NZST): waits until 08:00 local = 20:00 UTC.
    assert (auckland.status, auckland.scheduled_for) == (
        D.QUEUED,
        dt.datetime(2030, 6, 12, 20, 0, tzinfo=UTC),
    )
    assert outcome.deferred == {"quiet_hours_deferred": 2}

    # When the window ends the row is due again, and goes out.
    send(run, now=dt.datetime(2030, 6, 12, 15, 0, tzinfo=UTC))
    la.refresh_from_db()
    assert (la.status, la.reason) == (D.SENT, "")


@pytest.mark.django_db
def test_quiet_hours_skip_suppresses(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    run = start_run(sending_campaign(quiet_hours_policy=Campaign.QuietHoursPolicy.SKIP))
    by_zone = _zones()
    queue(run, list(by_zone.values()))

    send(run)

    assert statuses(run) == {
        by_zone["Europe/Berlin"].pk: (D.SENT, ""),
        by_zone["America/Los_Angeles"].pk: (D.SUPPRESSED, "quiet_hours"),
        by_zone["Pacific/Auckland"].pk: (D.SUPPRESSED, "quiet_hours"),
    }


@pytest.mark.django_db
def test_subscriber_window_and_campaign_override(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    # start == end: the campaign turns the app's window off; the subscriber's own still counts.
    run = start_run(sending_campaign(quiet_hours_start=dt.time(0), quiet_hours_end=dt.time(0)))
    by_zone = _zones()
    Subscriber.objects.filter(pk=by_zone["Europe/Berlin"].subscriber_id).update(
        quiet_hours_start=dt.time(14, 30), quiet_hours_end=dt.time(16, 0)
    )
    queue(run, list(by_zone.values()))

    send(run)

    rows = {r.device_id: r for r in Delivery.objects.filter(run=run)}
    berlin = rows[by_zone["Europe/Berlin"].pk]
    assert (berlin.status, berlin.scheduled_for) == (D.QUEUED, dt.datetime(2030, 6, 12, 14, 0, tzinfo=UTC))
    assert rows[by_zone["Pacific/Auckland"].pk].status == D.SENT
    assert rows[by_zone["America/Los_Angeles"].pk].status == D.SENT


@pytest.mark.django_db
def test_campaign_window_overrides_the_app_default(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    run = start_run(sending_campaign(quiet_hours_start=dt.time(14), quiet_hours_end=dt.time(18)))
    by_zone = _zones()
    queue(run, list(by_zone.values()))

    send(run)

    rows = {r.device_id: r for r in Delivery.objects.filter(run=run)}
    assert rows[by_zone["Europe/Berlin"].pk].scheduled_for == dt.datetime(2030, 6, 12, 16, 0, tzinfo=UTC)
    assert rows[by_zone["Pacific/Auckland"].pk].status == D.SENT  # 01:00 is fine for this campaign
    assert rows[by_zone["America/Los_Angeles"].pk].status == D.SENT


# --- Frequency caps -------------------------------------------------------------------


@pytest.mark.django_db
def test_daily_cap_counts_the_subscribers_local_day() -> None:
    run = start_run(sending_campaign())
    la, auckland = audience(1, timezone="America/Los_Angeles")[0], audience(1, timezone="Pacific/Auckland")[0]
    for device in (la, auckland):
        # 11:30 UTC: 04:30 today in Los Angeles, but 23:30 *yesterday* in Auckland.
        for _ in range(3):
            history(device.subscriber_id, sent_at=dt.datetime(2030, 6, 12, 11, 30, tzinfo=UTC))
    queue(run, [la, auckland])

    outcome = send(run)

    rows = {r.device_id: r for r in Delivery.objects.filter(run=run)}
    assert rows[auckland.pk].status == D.SENT
    capped = rows[la.pk]
    # Deferred to the next local midnight in Los Angeles (07:00 UTC), reason kept while waiting.
    assert (capped.status, capped.reason, capped.scheduled_for) == (
        D.QUEUED,
        "capped_daily",
        dt.datetime(2030, 6, 13, 7, 0, tzinfo=UTC),
    )
    assert outcome.deferred == {"capped_daily": 1}


@pytest.mark.django_db
def test_weekly_cap_counts_the_local_iso_week(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_CAP_PER_DAY = 0  # off: only the weekly cap here
    engine_settings.NOTIFYHUB_CAP_PER_WEEK = 2
    run = start_run(sending_campaign())
    fresh, full = audience(2)
    # Sunday evening (last week) does not count; Monday and Tuesday do.
    history(fresh.subscriber_id, sent_at=dt.datetime(2030, 6, 9, 20, 0, tzinfo=UTC))
    history(fresh.subscriber_id, sent_at=dt.datetime(2030, 6, 10, 9, 0, tzinfo=UTC))
    history(full.subscriber_id, sent_at=dt.datetime(2030, 6, 10, 9, 0, tzinfo=UTC))
    history(full.subscriber_id, sent_at=dt.datetime(2030, 6, 11, 9, 0, tzinfo=UTC))
    queue(run, [fresh, full])

    send(run)

    rows = {r.device_id: r for r in Delivery.objects.filter(run=run)}
    assert rows[fresh.pk].status == D.SENT
    # Next Monday 00:00 in Berlin (CEST) = Sunday 22:00 UTC.
    assert (rows[full.pk].reason, rows[full.pk].scheduled_for) == (
        "capped_weekly",
        dt.datetime(2030, 6, 16, 22, 0, tzinfo=UTC),
    )


@pytest.mark.django_db
def test_caps_count_messages_not_devices_and_exempt_transactional(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_CAP_PER_DAY = 2
    marketing = start_run(sending_campaign())
    transactional = start_run(sending_campaign(topic=TopicFactory(is_transactional=True)))
    (device,) = audience(1)
    Device.objects.create(subscriber_id=device.subscriber_id, token="second", platform="ios")
    earlier = NOW - dt.timedelta(hours=1)
    history(device.subscriber_id, sent_at=earlier, devices=2)  # one message on two devices
    history(device.subscriber_id, sent_at=earlier, topic=TopicFactory(is_transactional=True))  # not counted
    queue(marketing, [device])
    queue(transactional, [device])

    send(marketing)
    send(transactional)

    assert statuses(marketing) == {device.pk: (D.SENT, "")}  # 1 marketing message so far < 2
    assert statuses(transactional) == {device.pk: (D.SENT, "")}  # exempt whatever the count


@pytest.mark.django_db
def test_topic_cap_and_the_subscribers_own_limit() -> None:
    offers = TopicFactory(max_per_day=1)
    run = start_run(sending_campaign(topic=offers))
    topic_full, own_limit, other_topic = audience(3)
    history(topic_full.subscriber_id, sent_at=NOW - dt.timedelta(hours=2), topic=offers)
    Subscriber.objects.filter(pk=own_limit.subscriber_id).update(frequency_limit="daily")
    history(own_limit.subscriber_id, sent_at=NOW - dt.timedelta(hours=2))
    history(other_topic.subscriber_id, sent_at=NOW - dt.timedelta(hours=2))  # another topic: fine
    queue(run, [topic_full, own_limit, other_topic])

    send(run)

    assert statuses(run) == {
        topic_full.pk: (D.QUEUED, "capped_topic"),
        own_limit.pk: (D.QUEUED, "capped_subscriber"),
        other_topic.pk: (D.SENT, ""),
    }


@pytest.mark.django_db
def test_drop_policy_suppresses_with_the_cap_named() -> None:
    run = start_run(sending_campaign(cap_policy=Campaign.CapPolicy.DROP))
    (device,) = audience(1)
    for _ in range(3):
        history(device.subscriber_id, sent_at=NOW - dt.timedelta(hours=1))
    queue(run, [device])

    send(run)

    assert statuses(run) == {device.pk: (D.SUPPRESSED, "cap_daily")}


@pytest.mark.django_db
def test_messages_in_flight_count_but_only_delay_briefly(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_CAP_PER_DAY = 1
    run = start_run(sending_campaign(cap_policy=Campaign.CapPolicy.DROP))
    other = start_run(sending_campaign())
    (device,) = audience(1)
    queue(run, [device])
    queue(other, [device])
    claim(other)  # another campaign's batch holds a message to the same person right now

    send(run)

    row = Delivery.objects.get(run=run)
    assert (row.status, row.reason) == (D.QUEUED, "capped_daily")  # not dropped: the other may fail
    assert row.scheduled_for == NOW + dt.timedelta(seconds=60)


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_caps_hold_with_two_campaigns_sending_to_the_same_people_at_once(engine_settings: Any) -> None:
    require_postgres()
    require(
        connection.vendor == "postgresql", "concurrent caps need the suite on PostgreSQL (DATABASE_URL=…)"
    )
    engine_settings.NOTIFYHUB_CAP_PER_DAY = 2
    people = audience(60)
    for device in people[:30]:  # half already got one message today: one more allowed
        history(device.subscriber_id, sent_at=NOW - dt.timedelta(hours=3))
    runs = [start_run(sending_campaign()) for _ in range(3)]
    batches = []
    for run in runs:
        queue(run, people)
        batches.append(claim(run))
    barrier = threading.Barrier(len(runs))
    errors: list[BaseException] = []

    def work(ids: list[int], token: int) -> None:
        try:
            barrier.wait(timeout=10)
            send_batch(delivery_ids=ids, claim=token, backend=FakeBackend(), now=NOW)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=batch) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors

    def sent_today(device: Device) -> int:
        return Delivery.objects.filter(subscriber_id=device.subscriber_id, status=D.SENT).count()

    # Exactly the cap: never more, and no one starved by the others' in-flight messages.
    assert [sent_today(d) for d in people] == [2] * 60
    # Whoever waited did so with a reason, and is judged again later: still capped.
    waiting = Delivery.objects.filter(run__in=runs, status=D.QUEUED)
    assert waiting.exists() and set(waiting.values_list("reason", flat=True)) == {"capped_daily"}
    later = NOW + dt.timedelta(minutes=2)
    for run in runs:
        send(run, now=later, backend=FakeBackend())
    assert [sent_today(d) for d in people] == [2] * 60


# --- Retries, 429, dead tokens, fatal errors -----------------------------------------


def test_retry_delay_is_exponential_with_jitter_and_bounded() -> None:
    for attempts, base in [(1, 5), (2, 10), (3, 20), (7, 320), (8, 600), (20, 600)]:
        for _ in range(50):
            delay = retry_delay(attempts=attempts).total_seconds()
            assert 0.5 * base <= delay <= 1.5 * base
    assert retry_delay(attempts=1, retry_after=120).total_seconds() == 120


@pytest.mark.django_db
def test_transient_errors_back_off_then_fail_and_the_run_shows_it(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_SEND_MAX_ATTEMPTS = 3
    campaign = sending_campaign()
    run = start_run(campaign)
    flaky, fine = audience(2)
    queue(run, [flaky, fine])
    backend = FakeBackend(
        lambda m: (
            SendResult(ok=False, error_code="UNAVAILABLE", error="503")
            if m.device_id == flaky.pk
            else SendResult(ok=True, message_id="ok")
        )
    )

    now = NOW
    for attempt in (1, 2):
        outcome = send(run, now=now, backend=backend)
        assert outcome.retried == 1
        row = Delivery.objects.get(device=flaky)
        assert (row.status, row.reason, row.attempts) == (D.QUEUED, "unavailable", attempt)
        base = 5 * 2 ** (attempt - 1)
        assert (
            now + dt.timedelta(seconds=0.5 * base)
            <= row.scheduled_for
            <= now + dt.timedelta(seconds=1.5 * base)
        )
        assert (
            send(run, now=row.scheduled_for - dt.timedelta(milliseconds=1), backend=backend).sent == 0
        )  # not yet
        now = row.scheduled_for

    outcome = send(run, now=now, backend=backend)
    row = Delivery.objects.get(device=flaky)
    assert (outcome.failed, row.status, row.attempts, row.error) == (1, D.FAILED, 3, "503")
    assert len([m for m in backend.messages if m.device_id == flaky.pk]) == 3

    dispatch_due(now=now)
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (R.PARTIALLY_FAILED, now)
    assert run_delivery_counts(run_ids=[run.pk])[run.pk] == {"sent": 1, "failed": 1}


@pytest.mark.django_db
def test_backend_exception_is_a_transient_error() -> None:
    class Broken:
        def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
            raise ConnectionError("connection reset")

    run = start_run(sending_campaign())
    queue(run, audience(2))

    outcome = send(run, backend=Broken())

    assert outcome.retried == 2
    assert {(r.status, r.reason, r.attempts) for r in Delivery.objects.filter(run=run)} == {
        (D.QUEUED, "transport", 1)
    }


@pytest.mark.django_db
@pytest.mark.parametrize(("retry_after", "wait"), [(30.0, 30), (None, 60)])
def test_429_waits_for_retry_after_across_all_workers(
    retry_after: float | None, wait: int, django_capture_on_commit_callbacks: Any
) -> None:
    run = start_run(sending_campaign())
    other = start_run(sending_campaign())
    throttled = audience(2)
    queue(run, throttled)
    queue(other, audience(1))
    backend = failing("QUOTA_EXCEEDED", retry_after=retry_after)

    outcome = send(run, backend=backend)

    until = NOW + dt.timedelta(seconds=wait)
    assert outcome.deferred == {"quota_exceeded": 2} and outcome.failed == 0
    rows = list(Delivery.objects.filter(run=run))
    assert {(r.status, r.attempts, r.scheduled_for) for r in rows} == {(D.QUEUED, 0, until)}
    assert provider_backoff_until() == until
    # No request before Retry-After: dispatch claims nothing, not even other runs' rows …
    batches: list[Any] = []
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch_due(now=until - dt.timedelta(seconds=1), enqueue=lambda *a: batches.append(a)) == 0
    assert batches == []
    # … and a batch claimed earlier goes back to the queue unsent.
    ids, token = claim(other, now=NOW)
    early = send_batch(delivery_ids=ids, claim=token, backend=backend, now=NOW + dt.timedelta(seconds=5))
    assert early.deferred == {"provider_backoff": 1} and len(backend.calls) == 1
    assert Delivery.objects.get(run=other).scheduled_for == until
    # At Retry-After, everything goes out.
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch_due(now=until, enqueue=lambda *a: batches.append(a)) == 3


@pytest.mark.django_db
def test_dead_tokens_deactivate_their_devices_and_are_never_targeted_again() -> None:
    campaign = sending_campaign()
    run = start_run(campaign)
    gone, mismatch, invalid, fine = audience(4)
    codes = {gone.pk: "UNREGISTERED", mismatch.pk: "SENDER_ID_MISMATCH", invalid.pk: "INVALID_ARGUMENT"}
    queue(run, [gone, mismatch, invalid, fine])
    backend = FakeBackend(
        lambda m: (
            SendResult(ok=False, error_code=codes[m.device_id], error="dead", token_invalid=True)
            if m.device_id in codes
            else SendResult(ok=True, message_id="ok")
        )
    )

    outcome = send(run, backend=backend)

    assert outcome.invalid_tokens == 3 and outcome.sent == 1 and not outcome.paused_runs
    assert statuses(run) == {
        gone.pk: (D.INVALID_TOKEN, "unregistered"),
        mismatch.pk: (D.INVALID_TOKEN, "sender_id_mismatch"),
        invalid.pk: (D.INVALID_TOKEN, "invalid_argument"),
        fine.pk: (D.SENT, ""),
    }
    devices = {d.pk: d for d in Device.objects.filter(pk__in=[gone.pk, mismatch.pk, invalid.pk, fine.pk])}
    assert {pk: (d.is_active, d.invalidation_reason) for pk, d in devices.items()} == {
        gone.pk: (False, "unregistered"),
        mismatch.pk: (False, "sender_mismatch"),
        invalid.pk: (False, "invalid"),
        fine.pk: (True, ""),
    }
    assert devices[gone.pk].invalidated_at == NOW
    Run.objects.filter(pk=run.pk).update(status=R.PAUSED)  # not a fatal error: the run goes on
    audience_ids = set(campaign_audience(campaign=campaign).values_list("pk", flat=True))
    assert gone.subscriber_id not in audience_ids and fine.subscriber_id in audience_ids


@pytest.mark.django_db
def test_dead_tokens_and_outcomes_commit_together(monkeypatch: pytest.MonkeyPatch) -> None:
    run = start_run(sending_campaign())
    (device,) = audience(1)
    queue(run, [device])

    def explode(**kwargs: Any) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr(sending, "devices_deactivate_dead", explode)
    with pytest.raises(RuntimeError):
        send(run, backend=failing("UNREGISTERED", token_invalid=True))

    # Neither the outcome nor the deactivation: the row stays claimed until its lease ends.
    assert statuses(run) == {device.pk: (D.SENDING, "")}
    assert Device.objects.get(pk=device.pk).is_active


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "flags", "words"),
    [
        ("INVALID_ARGUMENT", {}, "Fix the variant"),
        ("AUTH", {}, "FIREBASE_CREDENTIALS"),
        ("CONFIG", {"fatal": True}, "Check FIREBASE_CREDENTIALS"),  # a backend's own fatal outcome
    ],
)
def test_payload_or_auth_error_pauses_the_run_and_deactivates_nothing(
    code: str, flags: dict[str, Any], words: str
) -> None:
    run = start_run(sending_campaign())
    went, bad, dead = audience(3)
    queue(run, [went, bad, dead])
    answers = {
        went.pk: SendResult(ok=True, message_id="ok"),
        bad.pk: SendResult(ok=False, error_code=code, error="The message is invalid", **flags),
        dead.pk: SendResult(ok=False, error_code="UNREGISTERED", error="gone", token_invalid=True),
    }

    outcome = send(run, backend=FakeBackend(lambda m: answers[m.device_id]))

    run.refresh_from_db()
    assert run.status == R.PAUSED and code in run.error and words in run.error
    assert outcome.paused_runs == [run.pk]
    assert statuses(run) == {went.pk: (D.SENT, ""), bad.pk: (D.QUEUED, ""), dead.pk: (D.QUEUED, "")}
    assert Device.objects.filter(is_active=False).count() == 0
    assert {r.attempts for r in Delivery.objects.filter(run=run)} == {0}
    assert dispatch_due(now=NOW + dt.timedelta(minutes=1)) == 0  # a paused run sends nothing


@pytest.mark.django_db
def test_an_unusable_backend_pauses_the_run(engine_settings: Any) -> None:
    engine_settings.NOTIFYHUB_PUSH_BACKEND = "carrier-pigeon"
    run = start_run(sending_campaign())
    queue(run, audience(2))

    outcome = send(run)

    run.refresh_from_db()
    assert outcome.paused_runs == [run.pk] and "carrier-pigeon" in run.error
    assert set(statuses(run).values()) == {(D.QUEUED, "")}


# --- The claim is the guard -----------------------------------------------------------


@pytest.mark.django_db
def test_stale_or_duplicate_batches_send_nothing(engine_settings: Any) -> None:
    run = start_run(sending_campaign())
    queue(run, audience(3))
    ids, stale = claim(run)
    # Its worker vanished: the lease expires and a later tick claims the rows again.
    later = NOW + dt.timedelta(seconds=engine_settings.NOTIFYHUB_SEND_LEASE_SECONDS + 1)
    fresh_batches: list[Any] = []
    dispatch_due(now=later, enqueue=lambda *a: fresh_batches.append(a))
    assert Delivery.objects.filter(run=run, status=D.SENDING, claimed_at=later).count() == 3

    backend = FakeBackend()
    assert send_batch(delivery_ids=ids, claim=stale, backend=backend, now=later).skipped == 3
    assert backend.calls == []
    fresh = claim_token(later)
    assert send_batch(delivery_ids=ids, claim=fresh, backend=backend, now=later).sent == 3
    # The same task delivered twice, and a claim-less call: nothing is sent again.
    assert send_batch(delivery_ids=ids, claim=fresh, backend=backend, now=later).skipped == 3
    assert send_batch(delivery_ids=ids, backend=backend, now=later).skipped == 3
    assert len(backend.messages) == 3


# --- Query counts do not grow with the batch -----------------------------------------


@pytest.mark.django_db
def test_send_batch_queries_do_not_grow_with_the_batch(django_assert_max_num_queries: Any) -> None:
    """Reserve (lock, subscriber lock, rows, caps, one UPDATE), events, outcomes (one UPDATE)."""
    topic = TopicFactory(max_per_day=5)
    counts = []
    for size in (10, 400):
        run = start_run(sending_campaign(topic=topic))
        devices = audience(size)
        for device in devices[:5]:
            history(device.subscriber_id, sent_at=NOW - dt.timedelta(hours=1))
        queue(run, devices)
        ids, token = claim(run)
        backend = FakeBackend()  # the backend's own queries are not send_batch's

        with django_assert_max_num_queries(11) as captured:
            outcome = send_batch(delivery_ids=ids, claim=token, backend=backend, now=NOW)

        assert outcome.sent == size and len(backend.messages) == size
        counts.append(len(captured))
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_now_defaults_to_the_current_time() -> None:
    run = start_run(sending_campaign())
    queue(run, audience(1), scheduled_for=timezone.now())
    ids = deliveries_claim(run_id=run.pk, limit=10, now=timezone.now())
    assert send_batch(delivery_ids=ids).sent == 1
