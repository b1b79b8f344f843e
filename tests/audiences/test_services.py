"""The consent service: a preference change writes exactly one ConsentRecord per change."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from audiences.models import ConsentRecord, Subscriber, TopicPreference
from audiences.services import (
    ConsentContext,
    PreferenceError,
    subscriber_record_initial_consent,
    subscriber_update_preferences,
)
from tests.factories import SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db

API = ConsentContext(source="api", ip_address="203.0.113.9", user_agent="TestApp/1.0")


def test_opt_out_writes_one_record_with_old_new_and_source() -> None:
    sub = SubscriberFactory(push_opt_in=True)
    records = subscriber_update_preferences(subscriber=sub, context=API, push_opt_in=False)
    assert len(records) == 1
    stored = ConsentRecord.objects.get(subscriber=sub)
    assert (stored.field, stored.old_value, stored.new_value, stored.source) == (
        "push_opt_in",
        True,
        False,
        "api",
    )
    sub.refresh_from_db()
    assert sub.push_opt_in is False
    # The address and user agent are kept only as keyed hashes.
    assert stored.ip_hash and "203.0.113.9" not in stored.ip_hash
    assert len(stored.ip_hash) == 64 and len(stored.user_agent_hash) == 64


def test_no_change_writes_nothing() -> None:
    sub = SubscriberFactory(push_opt_in=True, language="de")
    assert subscriber_update_preferences(subscriber=sub, context=API, push_opt_in=True, language="de") == []
    assert not ConsentRecord.objects.exists()


def test_each_changed_value_gets_its_own_record() -> None:
    sub = SubscriberFactory(language="en", frequency_limit="none")
    admin = User.objects.create_user("marketer")
    context = ConsentContext(source="admin", actor=admin, source_detail="support ticket 42")
    until = timezone.now() + dt.timedelta(days=7)
    subscriber_update_preferences(
        subscriber=sub,
        context=context,
        language="pt_BR",
        frequency_limit="weekly",
        quiet_hours=(dt.time(22), dt.time(7)),
        paused_until=until,
    )
    records = {r.field: r for r in ConsentRecord.objects.filter(subscriber=sub)}
    assert set(records) == {"language", "frequency_limit", "quiet_hours", "paused_until"}
    assert records["language"].old_value == "en" and records["language"].new_value == "pt-br"
    assert records["quiet_hours"].old_value is None
    assert records["quiet_hours"].new_value == ["22:00:00", "07:00:00"]
    assert records["paused_until"].new_value == until.isoformat()
    assert all(r.actor == admin and r.source_detail == "support ticket 42" for r in records.values())
    sub.refresh_from_db()
    assert (sub.language, sub.frequency_limit) == ("pt-br", "weekly")
    assert (sub.quiet_hours_start, sub.quiet_hours_end) == (dt.time(22), dt.time(7))


def test_topic_opt_out_from_default_and_back() -> None:
    sub = SubscriberFactory()
    offers = TopicFactory(slug="offers", default_opt_in=True)
    news = TopicFactory(slug="news", default_opt_in=False)

    subscriber_update_preferences(subscriber=sub, context=API, topics={offers: False, news: False})
    # news was already out by default: stored explicitly, but no consent changed.
    records = list(ConsentRecord.objects.filter(subscriber=sub))
    assert len(records) == 1
    assert (records[0].topic, records[0].old_value, records[0].new_value) == (offers, True, False)
    assert dict(TopicPreference.objects.values_list("topic__slug", "opted_in")) == {
        "offers": False,
        "news": False,
    }

    subscriber_update_preferences(subscriber=sub, context=API, topics={offers: True})
    assert ConsentRecord.objects.filter(subscriber=sub, topic=offers).count() == 2
    assert TopicPreference.objects.get(topic=offers).opted_in is True


def test_invalid_values_are_refused_and_nothing_is_written() -> None:
    sub = SubscriberFactory(push_opt_in=True)
    with pytest.raises(PreferenceError, match="is not offered"):
        subscriber_update_preferences(subscriber=sub, context=API, push_opt_in=False, language="klingon")
    with pytest.raises(PreferenceError, match="Frequency"):
        subscriber_update_preferences(subscriber=sub, context=API, frequency_limit="hourly")
    with pytest.raises(PreferenceError, match="Quiet hours"):
        subscriber_update_preferences(subscriber=sub, context=API, quiet_hours=(dt.time(8), dt.time(8)))
    with pytest.raises(PreferenceError, match="Unknown consent source"):
        ConsentContext(source="gossip")
    # The first call failed after deciding to change push_opt_in: all of it rolled back.
    sub.refresh_from_db()
    assert sub.push_opt_in is True
    assert not ConsentRecord.objects.exists()


def test_clearing_quiet_hours_is_recorded() -> None:
    sub = SubscriberFactory(quiet_hours_start=dt.time(21), quiet_hours_end=dt.time(6))
    subscriber_update_preferences(subscriber=sub, context=API, quiet_hours=None)
    record = ConsentRecord.objects.get()
    assert (record.old_value, record.new_value) == (["21:00:00", "06:00:00"], None)
    sub.refresh_from_db()
    assert sub.quiet_hours_start is None and sub.quiet_hours_end is None


def test_update_query_count_is_bounded(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    sub = SubscriberFactory()
    topics = {TopicFactory(slug=f"t{i}"): False for i in range(5)}
    with django_assert_max_num_queries(14):
        subscriber_update_preferences(subscriber=sub, context=API, push_opt_in=False, topics=topics)
    assert ConsentRecord.objects.count() == 6


def test_initial_consent_is_recorded_once() -> None:
    subs = [SubscriberFactory(push_opt_in=i % 2 == 0) for i in range(4)]
    context = ConsentContext(source="import", source_detail="customers.csv")
    assert len(subscriber_record_initial_consent(subscribers=subs, context=context)) == 4
    assert subscriber_record_initial_consent(subscribers=subs, context=context) == []
    values = dict(ConsentRecord.objects.values_list("subscriber__external_id", "new_value"))
    assert values == {s.external_id: s.push_opt_in for s in subs}
    assert set(ConsentRecord.objects.values_list("source_detail", flat=True)) == {"customers.csv"}


def test_refreshes_the_callers_instance() -> None:
    sub = SubscriberFactory(push_opt_in=True)
    subscriber_update_preferences(subscriber=sub, context=API, push_opt_in=False)
    assert sub.push_opt_in is False
    assert Subscriber.objects.get(pk=sub.pk).push_opt_in is False
