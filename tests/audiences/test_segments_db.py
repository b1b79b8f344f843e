"""Every kind of segment condition against hand-built data (SQLite and PostgreSQL).

Each test builds a few subscribers that differ in exactly the way the condition
looks at, and checks who matches — including the negated form, so NULL handling
("no such attribute") is covered too.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from django.utils import timezone

from audiences.models import AttributeDefinition, ConsentRecord, Event, Segment, Subscriber, Topic
from audiences.segments.loading import rule_context_load
from audiences.selectors import segment_estimate, segment_subscribers
from audiences.services import (
    ConsentContext,
    SegmentError,
    segment_add_members_by_external_id,
    segment_create_static,
    segment_refresh_count,
    segment_save,
    segment_update_rules,
    subscriber_update_preferences,
)
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db
NOW = timezone.now()
_keys = count()


def ids(rules: dict[str, Any]) -> set[str]:
    return set(segment_subscribers(rules=rules).values_list("external_id", flat=True))


def where(
    *conditions: dict[str, Any], match: str = "all", exclude: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "match": match,
        "conditions": list(conditions),
        "exclude": {"match": "any", "conditions": exclude or []},
    }


def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


def event(subscriber: Subscriber, name: str, days_ago: float, **properties: Any) -> Event:
    return Event.objects.create(
        subscriber=subscriber,
        name=name,
        properties=properties,
        occurred_at=NOW - dt.timedelta(days=days_ago),
        idempotency_key=f"test-{next(_keys)}",
    )


def test_location_and_language() -> None:
    SubscriberFactory(
        external_id="madrid", country="ES", city="Madrid", timezone="Europe/Madrid", language="es"
    )
    SubscriberFactory(
        external_id="berlin", country="DE", city="Berlin", timezone="Europe/Berlin", language="de"
    )
    SubscriberFactory(external_id="nowhere", country="", city="", timezone="UTC", language="en")
    assert ids(where(cond("country", "in", ["ES", "FR"]))) == {"madrid"}
    assert ids(where(cond("country", "not_in", ["ES"]))) == {"berlin", "nowhere"}
    assert ids(where(cond("country", "is_not_set"))) == {"nowhere"}
    assert ids(where(cond("city", "eq", "MADRID"))) == {"madrid"}  # case-insensitive
    assert ids(where(cond("city", "contains", "erl"))) == {"berlin"}
    assert ids(where(cond("city", "ne", "Madrid"))) == {"berlin", "nowhere"}
    assert ids(where(cond("city", "in", ["berlin", "Paris"]))) == {"berlin"}
    assert ids(where(cond("timezone", "in", ["Europe/Madrid", "UTC"]))) == {"madrid", "nowhere"}
    assert ids(where(cond("language", "in", ["de", "es"]))) == {"madrid", "berlin"}


def test_interests_any_all_none() -> None:
    SubscriberFactory(external_id="both", interests=["tech", "music"])
    SubscriberFactory(external_id="tech", interests=["tech"])
    SubscriberFactory(external_id="none", interests=[])
    SubscriberFactory(external_id="lookalike", interests=["technology", "tech music"])
    assert ids(where(cond("interests", "any_of", ["tech", "travel"]))) == {"both", "tech"}
    assert ids(where(cond("interests", "all_of", ["tech", "music"]))) == {"both"}
    assert ids(where(cond("interests", "none_of", ["tech"]))) == {"none", "lookalike"}


def test_usage_and_purchase_aggregates() -> None:
    SubscriberFactory(
        external_id="active",
        sessions_30d=12,
        last_seen_at=NOW - dt.timedelta(days=2),
        purchase_count=4,
        total_spent=Decimal("420.00"),
        last_purchase_at=NOW - dt.timedelta(days=10),
    )
    SubscriberFactory(
        external_id="lapsed",
        sessions_30d=0,
        last_seen_at=NOW - dt.timedelta(days=80),
        purchase_count=1,
        total_spent=Decimal("19.99"),
        last_purchase_at=NOW - dt.timedelta(days=120),
    )
    SubscriberFactory(external_id="never", sessions_30d=0, last_seen_at=None, purchase_count=0)
    assert ids(where(cond("sessions_30d", "gte", 5))) == {"active"}
    assert ids(where(cond("last_seen_at", "within_last", 30))) == {"active"}
    assert ids(where(cond("last_seen_at", "more_than_days_ago", 30))) == {"lapsed"}
    assert ids(where(cond("last_seen_at", "is_not_set"))) == {"never"}
    assert ids(where(cond("purchase_count", "between", [1, 3]))) == {"lapsed"}
    assert ids(where(cond("purchase_count", "ne", 0))) == {"active", "lapsed"}
    assert ids(where(cond("total_spent", "gt", 100))) == {"active"}
    assert ids(where(cond("total_spent", "lt", "20"))) == {"lapsed", "never"}
    assert ids(where(cond("last_purchase_at", "more_than_days_ago", 60))) == {"lapsed"}
    recent = (NOW - dt.timedelta(days=15)).date().isoformat()
    assert ids(where(cond("last_purchase_at", "after", recent))) == {"active"}
    assert ids(where(cond("last_purchase_at", "before", recent))) == {"lapsed"}
    # Negation inside the exclusion group keeps people without a last purchase.
    assert ids(
        where(cond("purchase_count", "gte", 0), exclude=[cond("last_purchase_at", "within_last", 30)])
    ) == {
        "lapsed",
        "never",
    }


def test_custom_attributes_by_type() -> None:
    for key, type_ in (("plan", "text"), ("age", "number"), ("vip", "boolean"), ("renewal", "date")):
        AttributeDefinition.objects.create(key=key, type=type_)
    today = timezone.localdate()
    SubscriberFactory(
        external_id="pro",
        attributes={
            "plan": "Pro",
            "age": 41,
            "vip": True,
            "renewal": (today + dt.timedelta(days=5)).isoformat(),
        },
    )
    SubscriberFactory(
        external_id="free",
        attributes={
            "plan": "free",
            "age": 19.5,
            "vip": False,
            "renewal": (today - dt.timedelta(days=3)).isoformat(),
        },
    )
    SubscriberFactory(external_id="bare", attributes={})
    SubscriberFactory(
        external_id="odd", attributes={"plan": "", "age": "41", "vip": "yes", "renewal": "soon"}
    )
    assert ids(where(cond("attr.plan", "eq", "pro"))) == {"pro"}
    assert ids(where(cond("attr.plan", "ne", "pro"))) == {"free", "bare", "odd"}
    assert ids(where(cond("attr.plan", "contains", "RE"))) == {"free"}
    assert ids(where(cond("attr.plan", "in", ["free", "team"]))) == {"free"}
    assert ids(where(cond("attr.plan", "is_set"))) == {"pro", "free"}
    assert ids(where(cond("attr.plan", "is_not_set"))) == {"bare", "odd"}
    # Numbers compare as numbers; a string "41" is not a number.
    assert ids(where(cond("attr.age", "gt", 20))) == {"pro"}
    assert ids(where(cond("attr.age", "lt", 20))) == {"free"}
    assert ids(where(cond("attr.age", "between", [19, 41]))) == {"pro", "free"}
    assert ids(where(cond("attr.age", "eq", 41))) == {"pro"}
    assert ids(where(cond("attr.vip", "is_true"))) == {"pro"}
    assert ids(where(cond("attr.vip", "is_false"))) == {"free"}
    assert ids(where(cond("attr.renewal", "within_next", 7))) == {"pro"}
    assert ids(where(cond("attr.renewal", "within_last", 7))) == {"free"}
    assert ids(where(cond("attr.renewal", "after", today.isoformat()))) == {"pro"}
    assert ids(where(cond("attr.renewal", "is_set"))) == {"pro", "free"}


def test_events_with_counts_windows_and_property_filters() -> None:
    twice = SubscriberFactory(external_id="twice")
    event(twice, "purchase", 5, category="shoes", amount=80)
    event(twice, "purchase", 40, category="books", amount=12)
    once = SubscriberFactory(external_id="once")
    event(once, "purchase", 10, category="Shoes", amount=30)
    event(once, "purchase", 200, category="shoes", amount=30)  # outside 90 days
    idle = SubscriberFactory(external_id="idle")
    event(idle, "app_open", 100)
    did = lambda **v: cond("event", "did", {"name": "purchase", "days": 90, **v})  # noqa: E731
    assert ids(where(did(count=1))) == {"twice", "once"}
    assert ids(where(did(count=2))) == {"twice"}
    assert ids(where(did(count=2, days=365))) == {"twice", "once"}
    assert ids(where(did(count=1, where={"key": "category", "op": "eq", "value": "shoes"}))) == {
        "twice",
        "once",
    }
    assert ids(where(did(count=1, where={"key": "amount", "op": "gt", "value": 50}))) == {"twice"}
    assert ids(where(did(count=2, days=365, where={"key": "amount", "op": "gte", "value": 30}))) == {"once"}
    assert ids(where(cond("event", "did_not", {"name": "purchase", "days": 7}))) == {"once", "idle"}
    assert ids(where(cond("event", "did_not", {"name": "app_open", "days": 365}))) == {"twice", "once"}


def test_device_platform_topic_opt_in_and_static_segments() -> None:
    ios = SubscriberFactory(external_id="ios")
    DeviceFactory(subscriber=ios, platform="ios")
    android = SubscriberFactory(external_id="android")
    DeviceFactory(subscriber=android, platform="android")
    dead = SubscriberFactory(external_id="dead-ios")
    DeviceFactory(
        subscriber=dead,
        platform="ios",
        is_active=False,
        invalidated_at=NOW,
        invalidation_reason="unregistered",
    )
    assert ids(where(cond("device_platform", "any_of", ["ios"]))) == {"ios"}
    assert ids(where(cond("device_platform", "none_of", ["ios"]))) == {"android", "dead-ios"}

    offers = TopicFactory(slug="offers", default_opt_in=True)
    news = TopicFactory(slug="news", default_opt_in=False)
    context = ConsentContext(source=ConsentRecord.Source.ADMIN, source_detail="test")
    subscriber_update_preferences(subscriber=ios, context=context, topics={offers: False, news: True})
    assert ids(where(cond("topic", "opted_in", offers.pk))) == {"android", "dead-ios"}
    assert ids(where(cond("topic", "opted_in", news.pk))) == {"ios"}
    assert ids(where(cond("topic", "opted_out", news.pk))) == {"android", "dead-ios"}

    static = segment_create_static(name="Hand-picked", subscribers=[android.pk, dead.pk])
    assert ids(where(cond("segment", "in", static.pk))) == {"android", "dead-ios"}
    assert ids(where(cond("segment", "not_in", static.pk))) == {"ios"}
    # A rule segment inside another is inlined; "not in" is its exact complement.
    apple = segment_save(name="Apple", rules=where(cond("device_platform", "any_of", ["ios"])))
    assert ids(where(cond("segment", "in", apple.pk), cond("topic", "opted_in", news.pk))) == {"ios"}
    assert ids(where(cond("segment", "not_in", apple.pk))) == {"android", "dead-ios"}


def test_nested_groups_and_exclusions() -> None:
    SubscriberFactory(external_id="es-buyer", country="ES", purchase_count=3)
    SubscriberFactory(external_id="es-fan", country="ES", sessions_30d=20)
    SubscriberFactory(external_id="es-none", country="ES")
    SubscriberFactory(external_id="de-buyer", country="DE", purchase_count=3)
    rules = where(
        cond("country", "in", ["ES"]),
        {"match": "any", "conditions": [cond("purchase_count", "gte", 1), cond("sessions_30d", "gte", 10)]},
        exclude=[cond("sessions_30d", "gt", 15)],
    )
    assert ids(rules) == {"es-buyer"}


def test_erased_subscribers_never_match() -> None:
    SubscriberFactory(external_id="gone", country="ES", erased_at=NOW)
    SubscriberFactory(external_id="here", country="ES")
    assert ids(where(cond("country", "in", ["ES"]))) == {"here"}


def test_count_is_exactly_one_query(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    AttributeDefinition.objects.create(key="plan", type="text")
    topic = TopicFactory()
    for i in range(3):
        s = SubscriberFactory(country="ES", attributes={"plan": "pro"}, interests=["tech"], purchase_count=i)
        DeviceFactory(subscriber=s, platform="ios")
        event(s, "purchase", 3)
    static = segment_create_static(name="List", subscribers=Subscriber.objects.all())
    rules = where(
        cond("country", "in", ["ES"]),
        cond("attr.plan", "eq", "pro"),
        cond("interests", "any_of", ["tech"]),
        cond("event", "did", {"name": "purchase", "days": 30, "count": 1}),
        cond("device_platform", "any_of", ["ios"]),
        cond("topic", "opted_in", topic.pk),
        cond("segment", "in", static.pk),
        exclude=[cond("purchase_count", "eq", 0)],
    )
    context = rule_context_load()
    with django_assert_num_queries(1):
        assert segment_subscribers(rules=rules, context=context).count() == 2
    with django_assert_num_queries(1):
        estimate = segment_estimate(rules=rules, context=context, topic_id=topic.pk, sample_size=0)
    assert (estimate.total, estimate.reachable) == (2, 2)


def test_estimate_counts_reachable_and_samples() -> None:
    topic = TopicFactory(default_opt_in=True)
    reachable = SubscriberFactory(external_id="r", country="ES")
    DeviceFactory(subscriber=reachable)
    no_device = SubscriberFactory(external_id="n", country="ES")
    opted_out = SubscriberFactory(external_id="o", country="ES", push_opt_in=False)
    DeviceFactory(subscriber=opted_out)
    topic_out = SubscriberFactory(external_id="t", country="ES")
    DeviceFactory(subscriber=topic_out)
    subscriber_update_preferences(
        subscriber=topic_out, context=ConsentContext(source=ConsentRecord.Source.ADMIN), topics={topic: False}
    )
    rules = where(cond("country", "in", ["ES"]))
    estimate = segment_estimate(rules=rules, sample_size=3)
    assert (estimate.total, estimate.reachable) == (4, 2)
    assert len(estimate.sample) == 3
    assert segment_estimate(rules=rules, topic_id=topic.pk).reachable == 1
    assert {s.external_id for s in segment_estimate(rules=rules).sample} == {"r", "n", "o", "t"}
    del no_device


def test_segment_save_validates_and_refuses_cycles() -> None:
    with pytest.raises(SegmentError, match="Add at least one condition") as error:
        segment_save(name="Empty", rules=where())
    assert error.value.extra["problems"][0]["message"] == "Add at least one condition."
    assert not Segment.objects.exists()

    a = segment_save(name="A", rules=where(cond("country", "in", ["es"])))
    assert a.rules["conditions"][0]["value"] == ["ES"]  # stored normalized
    b = segment_save(name="B", rules=where(cond("segment", "in", a.pk)))
    c = segment_save(name="C", rules=where(cond("segment", "not_in", b.pk)))
    with pytest.raises(SegmentError, match="loop"):
        segment_update_rules(segment=a, rules=where(cond("segment", "in", c.pk)))
    with pytest.raises(SegmentError, match="cannot include itself"):
        segment_update_rules(segment=a, rules=where(cond("segment", "in", a.pk)))
    a.refresh_from_db()
    assert a.rules["conditions"][0]["field"] == "country"
    with pytest.raises(SegmentError, match="already exists"):
        segment_save(name="a", rules=where(cond("country", "in", ["DE"])))
    static = segment_create_static(name="S", subscribers=[])
    with pytest.raises(SegmentError, match="static list"):
        segment_update_rules(segment=static, rules=where(cond("country", "in", ["DE"])))


def test_refresh_count_and_pasted_members() -> None:
    SubscriberFactory(external_id="a-1", country="ES")
    SubscriberFactory(external_id="a-2", country="ES")
    segment = segment_save(name="Spain", rules=where(cond("country", "in", ["ES"])))
    segment_refresh_count(segment=segment)
    segment.refresh_from_db()
    assert (segment.last_count, segment.last_reachable) == (2, 0)
    assert segment.counted_at is not None

    static = segment_create_static(name="Pasted", subscribers=[])
    with pytest.raises(SegmentError, match="1 of the pasted ids match no subscriber \\(missing\\)"):
        segment_add_members_by_external_id(segment=static, external_ids=["a-1", "missing"])
    assert not static.members.exists()
    assert segment_add_members_by_external_id(segment=static, external_ids=["a-1", "a-2", "a-1"]) == 2
    assert segment_add_members_by_external_id(segment=static, external_ids=["a-2"]) == 2
    assert set(segment_subscribers(segment=static).values_list("external_id", flat=True)) == {"a-1", "a-2"}


def test_rules_referencing_a_broken_segment_fail_with_a_clear_message() -> None:
    AttributeDefinition.objects.create(key="tier", type="text")
    inner = segment_save(name="Gold", rules=where(cond("attr.tier", "eq", "gold")))
    outer = segment_save(name="Gold in Spain", rules=where(cond("segment", "in", inner.pk)))
    AttributeDefinition.objects.filter(key="tier").delete()
    from audiences.segments import SegmentRulesError

    with pytest.raises(SegmentRulesError, match="“Gold”"):
        segment_subscribers(segment=outer).count()
    assert Topic.objects.count() == 0
