"""``manage.py seed_demo``: varied, idempotent demo data."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audiences.models import ConsentRecord, Device, Subscriber, Topic
from campaigns.models import Campaign, CampaignStatusChange, Variant
from campaigns.roles import APPROVER, MARKETER, VIEWER
from campaigns.selectors import variant_languages
from campaigns.services import campaign_problems
from delivery.models import Run

pytestmark = pytest.mark.django_db


def seed(count: int = 1000) -> str:
    out = io.StringIO()
    call_command("seed_demo", count=count, stdout=out)
    return out.getvalue()


def test_seed_demo_is_varied_and_idempotent() -> None:
    assert "1000 created now" in seed()
    subscribers = Subscriber.objects.all()
    assert subscribers.count() == 1000
    assert len(set(subscribers.values_list("language", flat=True))) >= 6
    assert len(set(subscribers.values_list("timezone", flat=True))) >= 10
    assert len(set(subscribers.values_list("country", flat=True))) >= 10
    assert set(Device.objects.values_list("platform", flat=True)) == {"android", "ios", "web"}
    opted_out = subscribers.filter(push_opt_in=False).count()
    assert 0 < opted_out < 300
    assert Device.objects.filter(is_active=False).exists()
    assert Topic.objects.count() == 4
    assert Topic.objects.get(slug="offers").name_de == "Angebote"
    # the ledger explains every opt-in state the demo starts in
    assert ConsentRecord.objects.filter(field="push_opt_in").count() == 1000

    before = (Subscriber.objects.count(), Device.objects.count(), ConsentRecord.objects.count())
    assert "0 created now" in seed()
    assert (Subscriber.objects.count(), Device.objects.count(), ConsentRecord.objects.count()) == before


def test_seed_demo_keeps_manual_edits_and_fills_gaps() -> None:
    seed(50)
    Topic.objects.filter(slug="offers").update(name_en="Deals")
    Subscriber.objects.filter(external_id="demo-00001").update(first_name="Edited")
    seed(60)
    assert Subscriber.objects.count() == 60
    assert Subscriber.objects.get(external_id="demo-00001").first_name == "Edited"
    assert Topic.objects.get(slug="offers").name_en == "Deals"


def test_seed_demo_events_match_the_aggregates_and_segments_are_meaningful() -> None:
    from decimal import Decimal

    from django.db.models import Count, Max

    from audiences.models import Event, Segment
    from audiences.selectors import segment_subscribers

    seed(300)
    purchases = {
        row["subscriber_id"]: row
        for row in Event.objects.filter(name="purchase")
        .values("subscriber_id")
        .annotate(n=Count("id"), last=Max("occurred_at"))
    }
    amounts: dict[int, Decimal] = {}
    for subscriber_id, properties in Event.objects.filter(name="purchase").values_list(
        "subscriber_id", "properties"
    ):
        amounts[subscriber_id] = amounts.get(subscriber_id, Decimal(0)) + Decimal(str(properties["amount"]))
    for s in Subscriber.objects.all():
        row = purchases.get(s.pk)
        assert (row["n"] if row else 0) == s.purchase_count
        if row:
            assert row["last"] == s.last_purchase_at
            assert amounts[s.pk].quantize(Decimal("0.01")) == s.total_spent
    sessions = dict(
        Event.objects.filter(name="session_start").values_list("subscriber_id").annotate(n=Count("id"))
    )
    assert all(sessions.get(s.pk, 0) == s.sessions_30d for s in Subscriber.objects.all())
    assert Event.objects.filter(name="add_to_cart").exists()

    names = set(Segment.objects.values_list("name", flat=True))
    assert {"Lapsed buyers in Spain", "High spenders, iOS"} <= names
    for segment in Segment.objects.all():
        size = segment_subscribers(segment=segment).count()
        assert segment.last_count == size
    lapsed = segment_subscribers(segment=Segment.objects.get(name="Lapsed buyers in Spain"))
    assert lapsed.exists() and set(lapsed.values_list("country", flat=True)) == {"ES"}
    assert segment_subscribers(segment=Segment.objects.get(name="High spenders, iOS")).exists()

    before = (Event.objects.count(), Segment.objects.count())
    seed(300)
    assert (Event.objects.count(), Segment.objects.count()) == before


def test_seed_demo_creates_a_campaign_of_each_kind_once() -> None:
    Group.objects.filter(name=VIEWER).delete()  # seed_demo puts the roles back
    assert "6 demo campaigns" in seed(200)
    assert set(Group.objects.values_list("name", flat=True)) >= {MARKETER, APPROVER, VIEWER}
    assert Group.objects.get(name=VIEWER).permissions.exists()
    by_name = {
        c.name: c for c in Campaign.objects.select_related("periodic_task__clocked", "periodic_task__crontab")
    }
    S, T = Campaign.Status, Campaign.ScheduleType

    at = by_name["Weekend flash sale"]
    assert (at.kind, at.schedule_type, at.status) == (Campaign.Kind.ONE_OFF, T.AT, S.SCHEDULED)
    assert at.send_at.weekday() == 5 and at.send_at > timezone.now()
    assert at.periodic_task.enabled and at.periodic_task.clocked.clocked_time == at.send_at

    local = by_name["Good morning in your time zone"]
    assert (local.schedule_type, local.status, local.local_time) == (T.LOCAL_TIME, S.SCHEDULED, dt.time(9))
    assert local.periodic_task.clocked.clocked_time == dt.datetime.combine(
        local.local_date, dt.time(9), tzinfo=dt.UTC
    ) - dt.timedelta(hours=14)

    weekly = by_name["Weekly digest"]
    assert (weekly.kind, weekly.schedule_type, weekly.status) == (
        Campaign.Kind.RECURRING,
        T.WEEKLY,
        S.SCHEDULED,
    )
    cron = weekly.periodic_task.crontab
    assert (cron.minute, cron.hour, cron.day_of_week) == ("0", "18", "1")
    assert cron.timezone == zoneinfo.ZoneInfo("Europe/Berlin")
    assert weekly.periodic_task.expires == weekly.ends_at

    triggered = by_name["Abandoned cart reminder"]
    assert (triggered.kind, triggered.status, triggered.periodic_task) == (
        Campaign.Kind.TRIGGERED,
        S.DRAFT,
        None,
    )
    assert triggered.include_segments.filter(name="Cart abandoners this week").exists()

    ab = by_name["Spring collection A/B test"]
    assert ab.ab_mode == Campaign.AbMode.TEST_THEN_WINNER and ab.status == S.IN_REVIEW
    variants = list(ab.variants.order_by("name"))
    assert [v.name for v in variants] == ["A", "B"]
    assert all({"en", "es", "de"} <= variant_languages(variant=v) for v in variants)

    sent = by_name["Welcome to the new app"]
    assert sent.status == S.COMPLETED
    assert list(Run.objects.filter(campaign=sent).values_list("status", "is_test")) == [("completed", False)]
    assert sent.periodic_task.enabled is False
    assert list(
        CampaignStatusChange.objects.filter(campaign=sent)
        .order_by("id")
        .values_list("from_status", "to_status")
    ) == [(S.DRAFT, S.SCHEDULED), (S.SCHEDULED, S.RUNNING), (S.RUNNING, S.COMPLETED)]

    # Every demo campaign is one a marketer could launch as it is (the triggered one included).
    for campaign in by_name.values():
        assert campaign_problems(campaign=campaign) == [], campaign.name

    # Seeding again adds nothing and keeps what a person changed.
    Variant.objects.filter(campaign=ab, name="A").update(title_en="Edited headline")
    counts = (
        Campaign.objects.count(),
        Variant.objects.count(),
        Run.objects.count(),
        PeriodicTask.objects.count(),
    )
    assert "6 demo campaigns" in seed(200)
    after = (
        Campaign.objects.count(),
        Variant.objects.count(),
        Run.objects.count(),
        PeriodicTask.objects.count(),
    )
    assert after == counts
    assert Variant.objects.get(campaign=ab, name="A").title_en == "Edited headline"
    assert CampaignStatusChange.objects.filter(campaign=sent).count() == 3
