"""Planning a run: the ledger rows one set-based pass writes for a pending run.

Runs on SQLite by default and on PostgreSQL with ``DATABASE_URL`` (the statement is
built per backend where the two differ): who gets a row, which variant or control,
in which language, when (local time, late policies, quiet hours), and that a second
pass writes nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from collections import Counter
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from audiences.models import Device, Subscriber, TopicPreference
from audiences.services import segment_save
from campaigns.models import Campaign
from delivery.models import Delivery, Run
from delivery.planning import (
    BUCKETS,
    LATE_GRACE,
    assignment_bucket,
    in_window,
    parse_window,
    run_plan,
    run_plan_pending,
)
from tests.factories import CampaignFactory, DeviceFactory, SubscriberFactory, TopicFactory, VariantFactory
from tests.services import require, require_postgres

UTC = dt.UTC
C = Campaign
D = Delivery.Status
# A Monday, 10:00 UTC: midday in Berlin, morning in New York, evening in Tokyo.
OCCURRENCE = dt.datetime(2030, 6, 3, 10, 0, tzinfo=UTC)


def make_campaign(*, variants: list[dict[str, Any]] | None = None, **fields: Any) -> Campaign:
    fields.setdefault("status", C.Status.RUNNING)
    campaign = CampaignFactory(**fields)
    for spec in variants or [{"name": "A"}]:
        VariantFactory(campaign=campaign, **spec)
    return campaign


def start(campaign: Campaign, occurrence: dt.datetime = OCCURRENCE) -> Run:
    return Run.objects.create(campaign=campaign, occurrence=occurrence)


def plan(run: Run, now: dt.datetime | None = None) -> int:
    return run_plan(run_id=run.pk, now=now or run.occurrence)


def person(*, devices: int = 1, **fields: Any) -> Subscriber:
    subscriber = SubscriberFactory(**fields)
    for _ in range(devices):
        DeviceFactory(subscriber=subscriber)
    return subscriber


def rows(run: Run) -> list[Delivery]:
    return list(Delivery.objects.filter(run=run).order_by("pk"))


def by_subscriber(run: Run) -> dict[int, Delivery]:
    return {row.subscriber_id: row for row in rows(run)}


def bulk_audience(n: int, *, prefix: str = "bulk", two_devices_every: int = 0) -> None:
    """``n`` reachable subscribers (UTC, English) with one active device each (two for every k-th)."""
    Subscriber.objects.bulk_create(
        [Subscriber(external_id=f"{prefix}-{i}", timezone="UTC", language="en") for i in range(n)],
        batch_size=2000,
    )
    ids = Subscriber.objects.filter(external_id__startswith=f"{prefix}-").values_list("pk", flat=True)
    devices = []
    for pk in ids:
        devices.append(Device(subscriber_id=pk, token=f"{prefix}-token-{pk}", platform="android"))
        if two_devices_every and pk % two_devices_every == 0:
            devices.append(Device(subscriber_id=pk, token=f"{prefix}-token-{pk}-b", platform="ios"))
    Device.objects.bulk_create(devices, batch_size=2000)


@pytest.fixture
def no_quiet_hours(settings: Any) -> None:
    settings.NOTIFYHUB_QUIET_HOURS = ""


# -- the hash: pure logic ------------------------------------------------------------------


@given(campaign_id=st.integers(1, 2**31), subscriber_id=st.integers(1, 2**62))
def test_the_bucket_is_a_stable_number_below_10000(campaign_id: int, subscriber_id: int) -> None:
    bucket = assignment_bucket(campaign_id=campaign_id, subscriber_id=subscriber_id)
    assert 0 <= bucket < BUCKETS
    assert bucket == assignment_bucket(campaign_id=campaign_id, subscriber_id=subscriber_id)


@pytest.mark.parametrize("campaign_id", [1, 2, 77, 100_003])
def test_buckets_are_uniform_over_sequential_and_strided_ids(campaign_id: int) -> None:
    for ids in (range(1, 100_001), range(2, 200_001, 2), range(7, 700_001, 7)):
        deciles = Counter(assignment_bucket(campaign_id=campaign_id, subscriber_id=i) // 1000 for i in ids)
        expected = len(ids) / 10
        assert all(abs(count - expected) < 0.04 * expected for count in deciles.values()), deciles


def test_campaigns_pick_their_control_groups_independently() -> None:
    """10 % control in two campaigns: about 1 % of people are in both, not 10 % or 0 %."""
    ids = range(1, 100_001)
    first = {i for i in ids if assignment_bucket(campaign_id=1, subscriber_id=i) < 1000}
    second = {i for i in ids if assignment_bucket(campaign_id=2, subscriber_id=i) < 1000}
    assert 800 < len(first & second) < 1200


def test_quiet_window_parsing_and_wrapping() -> None:
    assert parse_window("22:00-08:00") == (dt.time(22), dt.time(8))
    assert parse_window(" ") is None
    assert parse_window("08:00-08:00") is None
    with pytest.raises(ImproperlyConfigured, match="HH:MM-HH:MM"):
        parse_window("10pm to 8am")
    night = (dt.time(22), dt.time(8))
    assert (
        in_window(dt.time(23, 59), night) and in_window(dt.time(0), night) and in_window(dt.time(22), night)
    )
    assert not in_window(dt.time(8), night) and not in_window(dt.time(12), night)
    noon = (dt.time(12), dt.time(14))
    assert in_window(dt.time(13), noon) and in_window(dt.time(12), noon) and not in_window(dt.time(14), noon)


# -- who gets a row --------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_row_per_active_device_of_each_reachable_subscriber(no_quiet_hours: None) -> None:
    topic = TopicFactory()
    campaign = make_campaign(topic=topic)
    ada = person(devices=2)
    DeviceFactory(  # an inactive device of a reachable subscriber
        subscriber=ada, is_active=False, invalidated_at=timezone.now(), invalidation_reason="unregistered"
    )
    grace = person()
    person(push_opt_in=False)  # opted out of push
    topic_out = person()
    TopicPreference.objects.create(subscriber=topic_out, topic=topic, opted_in=False)
    person(erased_at=timezone.now())
    person(devices=0)
    dead = person(devices=0)
    DeviceFactory(
        subscriber=dead, is_active=False, invalidated_at=timezone.now(), invalidation_reason="invalid"
    )
    run = start(campaign)

    assert plan(run) == 3
    planned = rows(run)
    assert sorted((r.subscriber_id, r.device_id) for r in planned) == sorted(
        [(ada.pk, d.pk) for d in ada.devices.filter(is_active=True)]
        + [(grace.pk, d.pk) for d in grace.devices.all()]
    )
    variant = campaign.variants.get()
    for row in planned:
        assert (row.status, row.reason, row.variant_id, row.is_control) == (D.QUEUED, "", variant.pk, False)
        assert (row.language, row.scheduled_for, row.attempts) == ("en", OCCURRENCE, 0)
    run.refresh_from_db()
    assert (run.status, run.audience_size, run.planned_at, run.finished_at) == (
        Run.Status.SENDING, 3, OCCURRENCE, None,
    )  # fmt: skip
    campaign.refresh_from_db()
    assert campaign.status == C.Status.RUNNING  # the send step completes it


@pytest.mark.django_db
def test_the_campaign_segments_decide_the_audience(no_quiet_hours: None) -> None:
    campaign = make_campaign()
    spain = segment_save(
        name="Spain",
        rules={
            "match": "all",
            "conditions": [{"field": "country", "op": "in", "value": ["ES"]}],
            "exclude": {"match": "any", "conditions": []},
        },
    )
    campaign.include_segments.set([spain])
    madrid, _berlin = person(country="ES", timezone="Europe/Madrid"), person(country="DE")
    run = start(campaign)
    assert plan(run) == 1
    assert [r.subscriber_id for r in rows(run)] == [madrid.pk]


@pytest.mark.django_db
def test_a_second_pass_plans_nothing(no_quiet_hours: None) -> None:
    campaign = make_campaign()
    for _ in range(3):
        person(devices=2)
    run = start(campaign)
    assert plan(run) == 6
    assert plan(run) == 0
    # Even forced back to pending, the unique (run, device) keeps one row per device.
    Run.objects.filter(pk=run.pk).update(status=Run.Status.PENDING)
    person()
    assert plan(run) == 1
    assert Delivery.objects.filter(run=run).count() == 7


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_concurrent_planners_plan_a_run_once(settings: Any) -> None:
    """Two workers got the same plan task: one plans, the others wait on the run row, then find nothing."""
    require_postgres()
    require(connection.vendor == "postgresql", "concurrent planning needs the suite on PostgreSQL")
    settings.NOTIFYHUB_QUIET_HOURS = ""
    campaign = make_campaign(control_percent=10)
    bulk_audience(2_000, two_devices_every=5)
    run = start(campaign)
    workers = 4
    barrier = threading.Barrier(workers)
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(run_plan(run_id=run.pk, now=OCCURRENCE))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    devices = Device.objects.filter(is_active=True).count()
    assert sorted(results) == [0, 0, 0, devices]
    assert Delivery.objects.filter(run=run).count() == devices
    run.refresh_from_db()
    assert (run.status, run.audience_size) == (Run.Status.SENDING, devices)


@pytest.mark.django_db
def test_only_pending_real_runs_are_planned(no_quiet_hours: None) -> None:
    campaign = make_campaign()
    person()
    test_run = Run.objects.create(campaign=campaign, occurrence=OCCURRENCE, is_test=True)
    assert run_plan(run_id=test_run.pk) == 0
    assert run_plan(run_id=999_999) == 0
    sending = start(campaign)
    Run.objects.filter(pk=sending.pk).update(status=Run.Status.SENDING)
    assert plan(sending) == 0
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_run_plan_pending_plans_what_a_crash_left_behind(no_quiet_hours: None) -> None:
    campaign = make_campaign()
    person()
    run = start(campaign)
    assert run_plan_pending(campaign_id=campaign.pk, now=OCCURRENCE) == 1
    assert run_plan_pending(campaign_id=campaign.pk, now=OCCURRENCE) == 0
    run.refresh_from_db()
    assert run.status == Run.Status.SENDING


@pytest.mark.django_db
def test_nothing_to_send_completes_the_run_and_a_one_off_campaign() -> None:
    campaign = make_campaign()
    person(push_opt_in=False)
    run = start(campaign)
    assert plan(run) == 0
    run.refresh_from_db()
    campaign.refresh_from_db()
    assert (run.status, run.audience_size, run.finished_at) == (Run.Status.COMPLETED, 0, OCCURRENCE)
    assert campaign.status == C.Status.COMPLETED


@pytest.mark.django_db
def test_a_cancelled_campaign_cancels_its_run_and_no_variants_pauses_it() -> None:
    person()
    cancelled = start(make_campaign(status=C.Status.CANCELLED))
    assert plan(cancelled) == 0
    cancelled.refresh_from_db()
    assert cancelled.status == Run.Status.CANCELLED
    bare = CampaignFactory(status=C.Status.RUNNING)
    run = start(bare)
    assert plan(run) == 0
    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED and "no variants" in run.error
    assert not Delivery.objects.exists()


# -- variant or control ----------------------------------------------------------------------


@pytest.mark.django_db
def test_assignment_follows_the_hash_weights_and_control_share(no_quiet_hours: None) -> None:
    campaign = make_campaign(
        ab_mode=C.AbMode.SPLIT,
        control_percent=10,
        variants=[{"name": "A", "weight": 1}, {"name": "B", "weight": 3}],
    )
    bulk_audience(10_000, two_devices_every=7)
    run = start(campaign)
    planned = plan(run)
    assert planned == Device.objects.filter(is_active=True).count()

    a, b = campaign.variants.order_by("name")
    seen: dict[int, tuple[int | None, bool]] = {}
    for subscriber_id, variant_id, is_control, status, reason in Delivery.objects.filter(run=run).values_list(
        "subscriber_id", "variant_id", "is_control", "status", "reason"
    ):
        # Every device of a subscriber: the same choice.
        assert seen.setdefault(subscriber_id, (variant_id, is_control)) == (variant_id, is_control)
        # Exactly the Python twin of the SQL hash.
        bucket = assignment_bucket(campaign_id=campaign.pk, subscriber_id=subscriber_id)
        expected = None if bucket < 1000 else a.pk if bucket < 1000 + 9000 * 1 // 4 else b.pk
        assert (variant_id, is_control) == (expected, bucket < 1000)
        if is_control:
            assert (status, reason) == (D.SUPPRESSED, "control")
        else:
            assert (status, reason) == (D.QUEUED, "")
    shares = Counter("control" if control else variant for variant, control in seen.values())
    assert abs(shares["control"] / 10_000 - 0.10) < 0.015
    assert abs(shares[a.pk] / 10_000 - 0.225) < 0.02
    assert abs(shares[b.pk] / 10_000 - 0.675) < 0.02


@pytest.mark.django_db
def test_control_rows_keep_when_they_would_have_got_it(no_quiet_hours: None) -> None:
    campaign = make_campaign(control_percent=50)
    bulk_audience(200)
    run = start(campaign)
    plan(run)
    control = Delivery.objects.filter(run=run, is_control=True)
    assert control.exists() and not control.exclude(scheduled_for=OCCURRENCE).exists()
    assert not control.filter(variant__isnull=False).exists()
    assert not control.exclude(status=D.SUPPRESSED, reason="control").exists()


@pytest.mark.django_db
def test_without_ab_test_everyone_gets_the_first_variant(no_quiet_hours: None) -> None:
    campaign = make_campaign(ab_mode=C.AbMode.NONE, variants=[{"name": "B"}, {"name": "A"}])
    bulk_audience(300)
    run = start(campaign)
    plan(run)
    first = campaign.variants.get(name="A")
    assert set(Delivery.objects.filter(run=run).values_list("variant_id", flat=True)) == {first.pk}


@pytest.mark.django_db
def test_test_then_winner_plans_only_the_test_sample(no_quiet_hours: None) -> None:
    campaign = make_campaign(
        ab_mode=C.AbMode.TEST_THEN_WINNER,
        ab_test_percent=20,
        control_percent=10,
        variants=[{"name": "A"}, {"name": "B"}],
    )
    bulk_audience(5_000)
    run = start(campaign)
    planned = plan(run)
    # 10 % control + 20 % of the other 90 % in the test: 28 % of the audience now.
    assert abs(planned / 5_000 - 0.28) < 0.02
    test = Delivery.objects.filter(run=run, is_control=False)
    split = Counter(test.values_list("variant__name", flat=True))
    assert abs(split["A"] - split["B"]) < 0.15 * test.count()
    for subscriber_id in test.values_list("subscriber_id", flat=True):
        assert 1000 <= assignment_bucket(campaign_id=campaign.pk, subscriber_id=subscriber_id) < 1000 + 1800
    run.refresh_from_db()
    assert run.status == Run.Status.SENDING and run.audience_size == planned


# -- language -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_row_is_in_the_language_its_variant_serves(no_quiet_hours: None) -> None:
    campaign = make_campaign(
        ab_mode=C.AbMode.SPLIT,
        default_language="es",
        variants=[
            {"name": "A", "title_es": "Hola", "body_es": "Ofertas", "title_pt": "Olá", "body_pt": "Ofertas",
             "title_fr": "Salut", "body_fr": "Offres"},
            {"name": "B", "title_es": "Hola", "body_es": "Ofertas", "title_pt": "Olá", "body_pt": "Ofertas"},
        ],
    )  # fmt: skip
    people = {lang: [person(language=lang) for _ in range(12)] for lang in ("pt-br", "fr", "de", "es", "en")}
    run = start(campaign)
    plan(run)
    a = campaign.variants.get(name="A")
    planned = by_subscriber(run)
    assert {planned[s.pk].language for s in people["pt-br"]} == {"pt"}  # pt-br → pt
    assert {planned[s.pk].language for s in people["de"]} == {"es"}  # → the campaign's default
    # English is a variant language (the factory writes title_en/body_en): served as is.
    assert {planned[s.pk].language for s in people["en"]} == {"en"}
    for subscriber in people["fr"]:  # French where the variant has it, else the default
        row = planned[subscriber.pk]
        assert row.language == ("fr" if row.variant_id == a.pk else "es")


# -- when ------------------------------------------------------------------------------------


def local_campaign(**fields: Any) -> Campaign:
    fields.setdefault("fallback_timezone", "America/Sao_Paulo")
    return make_campaign(schedule_type=C.ScheduleType.LOCAL_TIME, **fields)


@pytest.mark.django_db
def test_local_time_is_each_time_zone_own_across_dst(no_quiet_hours: None) -> None:
    # 31 March 2030: Europe moves its clocks forward at 01:00 UTC; New York did on 10 March.
    campaign = local_campaign(local_date=dt.date(2030, 3, 31), local_time=dt.time(9))
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Mars/Olympus", ""]
    people = {zone: person(timezone=zone) for zone in zones}
    occurrence = dt.datetime(2030, 3, 30, 19, 0, tzinfo=UTC)  # 09:00 in UTC+14: the first zone
    run = start(campaign, occurrence)
    assert plan(run) == len(zones)
    planned = by_subscriber(run)
    expected = {
        "Europe/Berlin": dt.datetime(2030, 3, 31, 7, 0, tzinfo=UTC),  # CEST, UTC+2, that very day
        "America/New_York": dt.datetime(2030, 3, 31, 13, 0, tzinfo=UTC),  # EDT, UTC-4
        "Asia/Tokyo": dt.datetime(2030, 3, 31, 0, 0, tzinfo=UTC),
        "Pacific/Kiritimati": occurrence,
        "Mars/Olympus": dt.datetime(2030, 3, 31, 12, 0, tzinfo=UTC),  # unknown: São Paulo (UTC-3)
        "": dt.datetime(2030, 3, 31, 12, 0, tzinfo=UTC),
    }
    assert {zone: planned[people[zone].pk].scheduled_for for zone in zones} == expected
    assert {row.status for row in planned.values()} == {D.QUEUED}


@pytest.mark.django_db
def test_a_local_time_skipped_by_dst_is_sent_just_after_the_jump(no_quiet_hours: None) -> None:
    campaign = local_campaign(local_date=dt.date(2030, 3, 31), local_time=dt.time(2, 30))
    berlin = person(timezone="Europe/Berlin")
    run = start(campaign, dt.datetime(2030, 3, 30, 12, 30, tzinfo=UTC))
    plan(run)
    when = by_subscriber(run)[berlin.pk].scheduled_for
    assert when == dt.datetime(2030, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 CEST, the first minute after 02:30
    assert when.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")).time() == dt.time(3, 30)


LATE_NOW = dt.datetime(2030, 3, 31, 10, 0, tzinfo=UTC)  # 09:00 passed in Tokyo and Berlin, not New York


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "tokyo"),
    [
        (C.LatePolicy.SEND_NOW, (LATE_NOW, D.QUEUED, "")),
        (C.LatePolicy.NEXT_DAY, (dt.datetime(2030, 4, 1, 0, 0, tzinfo=UTC), D.QUEUED, "")),
        (C.LatePolicy.SKIP, (dt.datetime(2030, 3, 31, 0, 0, tzinfo=UTC), D.SUPPRESSED, "local_time_passed")),
    ],
)
def test_late_policies_for_zones_whose_local_time_passed(
    no_quiet_hours: None, policy: str, tokyo: tuple[dt.datetime, str, str]
) -> None:
    campaign = local_campaign(local_date=dt.date(2030, 3, 31), local_time=dt.time(9), late_policy=policy)
    people = {zone: person(timezone=zone) for zone in ("Asia/Tokyo", "America/New_York")}
    run = start(campaign, dt.datetime(2030, 3, 30, 19, 0, tzinfo=UTC))
    plan(run, now=LATE_NOW)
    planned = by_subscriber(run)
    row = planned[people["Asia/Tokyo"].pk]
    assert (row.scheduled_for, row.status, row.reason) == tokyo
    new_york = planned[people["America/New_York"].pk]
    assert (new_york.scheduled_for, new_york.status) == (
        dt.datetime(2030, 3, 31, 13, 0, tzinfo=UTC),
        D.QUEUED,
    )


@pytest.mark.django_db
def test_a_local_time_just_passed_is_not_late(no_quiet_hours: None) -> None:
    campaign = local_campaign(
        local_date=dt.date(2030, 3, 31), local_time=dt.time(9), late_policy=C.LatePolicy.SKIP
    )
    london = person(timezone="Europe/London")  # 09:00 BST = 08:00 UTC
    run = start(campaign, dt.datetime(2030, 3, 30, 19, 0, tzinfo=UTC))
    plan(run, now=dt.datetime(2030, 3, 31, 8, 0, tzinfo=UTC) + LATE_GRACE - dt.timedelta(seconds=1))
    row = by_subscriber(run)[london.pk]
    assert (row.status, row.scheduled_for) == (D.QUEUED, dt.datetime(2030, 3, 31, 8, 0, tzinfo=UTC))


@pytest.mark.django_db
@pytest.mark.parametrize("schedule", [C.ScheduleType.NOW, C.ScheduleType.AT, C.ScheduleType.DAILY])
def test_other_schedules_send_at_the_occurrence(no_quiet_hours: None, schedule: str) -> None:
    fields: dict[str, Any] = {"schedule_type": schedule}
    if schedule == C.ScheduleType.AT:
        fields["send_at"] = OCCURRENCE
    if schedule == C.ScheduleType.DAILY:
        fields |= {"kind": C.Kind.RECURRING, "local_time": dt.time(10)}
    campaign = make_campaign(**fields)
    tokyo, berlin = person(timezone="Asia/Tokyo"), person(timezone="Europe/Berlin")
    run = start(campaign)
    plan(run, now=OCCURRENCE + dt.timedelta(minutes=3))
    planned = by_subscriber(run)
    assert planned[tokyo.pk].scheduled_for == planned[berlin.pk].scheduled_for == OCCURRENCE


# -- quiet hours -----------------------------------------------------------------------------------

EVENING = dt.datetime(2030, 6, 3, 20, 30, tzinfo=UTC)  # 22:30 Berlin, 16:30 New York, 05:30 Tokyo


@pytest.mark.django_db
def test_the_app_quiet_hours_defer_to_their_local_end(settings: Any) -> None:
    settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    campaign = make_campaign()
    berlin, new_york, tokyo = (
        person(timezone=z) for z in ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
    )
    run = start(campaign, EVENING)
    plan(run)
    planned = by_subscriber(run)
    assert planned[berlin.pk].scheduled_for == dt.datetime(2030, 6, 4, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert planned[new_york.pk].scheduled_for == EVENING
    assert planned[tokyo.pk].scheduled_for == dt.datetime(
        2030, 6, 3, 23, 0, tzinfo=UTC
    )  # 08:00 JST, same day
    assert {row.status for row in planned.values()} == {D.QUEUED}


@pytest.mark.django_db
def test_the_campaign_quiet_hours_override_the_app_and_may_skip(settings: Any) -> None:
    settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    campaign = make_campaign(
        quiet_hours_start=dt.time(16),
        quiet_hours_end=dt.time(17),
        quiet_hours_policy=C.QuietHoursPolicy.SKIP,
    )
    berlin, new_york = person(timezone="Europe/Berlin"), person(timezone="America/New_York")
    run = start(campaign, EVENING)
    plan(run)
    planned = by_subscriber(run)
    assert (planned[berlin.pk].status, planned[berlin.pk].scheduled_for) == (D.QUEUED, EVENING)
    assert (planned[new_york.pk].status, planned[new_york.pk].reason) == (D.SUPPRESSED, "quiet_hours")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((dt.time(16), dt.time(18)), dt.datetime(2030, 6, 3, 22, 0, tzinfo=UTC)),  # 18:00 EDT
        ((dt.time(15), dt.time(2)), dt.datetime(2030, 6, 4, 6, 0, tzinfo=UTC)),  # wraps midnight: 02:00 EDT
        ((dt.time(17), dt.time(18)), EVENING),  # not inside
        ((dt.time(6), dt.time(16, 30)), EVENING),  # ends exactly now
    ],
)
def test_a_subscriber_own_quiet_hours_defer(
    no_quiet_hours: None, window: tuple[dt.time, dt.time], expected: dt.datetime
) -> None:
    campaign = make_campaign(control_percent=0)
    quiet = person(timezone="America/New_York", quiet_hours_start=window[0], quiet_hours_end=window[1])
    other = person(timezone="America/New_York")
    run = start(campaign, EVENING)
    plan(run)
    planned = by_subscriber(run)
    assert (planned[quiet.pk].scheduled_for, planned[quiet.pk].status) == (expected, D.QUEUED)
    assert planned[other.pk].scheduled_for == EVENING


@pytest.mark.django_db
def test_a_subscriber_own_quiet_hours_skip(no_quiet_hours: None) -> None:
    campaign = make_campaign(quiet_hours_policy=C.QuietHoursPolicy.SKIP)
    quiet = person(timezone="America/New_York", quiet_hours_start=dt.time(16), quiet_hours_end=dt.time(18))
    awake = person(timezone="America/New_York", quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))
    run = start(campaign, EVENING)
    plan(run)
    planned = by_subscriber(run)
    assert (planned[quiet.pk].status, planned[quiet.pk].reason) == (D.SUPPRESSED, "quiet_hours")
    assert (planned[awake.pk].status, planned[awake.pk].reason) == (D.QUEUED, "")
    run.refresh_from_db()
    assert run.status == Run.Status.SENDING


def language_rules(*languages: str) -> dict[str, Any]:
    return {
        "match": "all",
        "conditions": [{"field": "language", "op": "in", "value": list(languages)}],
        "exclude": {"match": "any", "conditions": []},
    }


# -- cost ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_the_audience(settings: Any) -> None:
    settings.NOTIFYHUB_QUIET_HOURS = "22:00-08:00"
    counts = []
    for size in (10, 200):
        campaign = make_campaign(
            ab_mode=C.AbMode.SPLIT, control_percent=10, variants=[{"name": "A"}, {"name": "B"}]
        )
        campaign.include_segments.set(
            [segment_save(name=f"Readers {size}", rules=language_rules("en", "fr"))]
        )
        Delivery.objects.all().delete()
        Device.objects.all().delete()
        Subscriber.objects.all().delete()
        bulk_audience(size, prefix=f"q{size}", two_devices_every=3)
        Subscriber.objects.filter(pk__in=Subscriber.objects.order_by("pk").values("pk")[: size // 2]).update(
            timezone="Asia/Tokyo", language="fr", quiet_hours_start=dt.time(1), quiet_hours_end=dt.time(5)
        )
        run = start(campaign)
        with CaptureQueriesContext(connection) as queries:
            planned = plan(run)
        assert planned == Device.objects.count()
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 16, counts


@pytest.mark.django_db
def test_planning_is_one_insert_statement(no_quiet_hours: None) -> None:
    campaign = make_campaign()
    bulk_audience(50)
    run = start(campaign)
    with CaptureQueriesContext(connection) as queries:
        plan(run)
    inserts = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and "delivery_delivery" in inserts[0]
