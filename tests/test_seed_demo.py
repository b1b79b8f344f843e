"""``manage.py seed_demo``: varied, idempotent demo data."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from audiences.models import ConsentRecord, Device, Subscriber, Topic

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
