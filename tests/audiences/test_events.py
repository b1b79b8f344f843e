"""Event ingestion: idempotency, behaviour aggregates, all-or-nothing, the sliding window."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from audiences import tasks
from audiences.models import Event, Subscriber
from audiences.services.events import (
    EventBatchError,
    EventInput,
    event_track_batch,
    event_track_receipt,
    parse_amount,
    subscribers_recompute_sessions_30d,
)
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def ev(external_id: str, name: str, key: str, *, at: dt.datetime = NOW, **properties: object) -> EventInput:
    return EventInput(
        external_id=external_id, name=name, occurred_at=at, idempotency_key=key, properties=dict(properties)
    )


def aggregates(subscriber: Subscriber) -> tuple[object, ...]:
    subscriber.refresh_from_db()
    return (
        subscriber.last_seen_at,
        subscriber.purchase_count,
        subscriber.total_spent,
        subscriber.last_purchase_at,
        subscriber.sessions_30d,
    )


def test_a_batch_records_events_and_updates_every_aggregate() -> None:
    ana, ben = SubscriberFactory(external_id="ana"), SubscriberFactory(external_id="ben")
    early, late = NOW - dt.timedelta(hours=5), NOW - dt.timedelta(hours=1)
    result = event_track_batch(
        events=[
            ev("ana", "purchase", "k1", at=early, amount="19.99", currency="EUR"),
            ev("ana", "purchase", "k2", at=late, amount=5),
            ev("ana", "session_start", "k3", at=early),
            ev("ana", "session_start", "k4", at=late),
            ev("ben", "add_to_cart", "k5", at=late, sku="A-1"),
        ],
        now=NOW,
    )
    assert (result.received, result.recorded, result.duplicates) == (5, 5, 0)
    assert aggregates(ana) == (late, 2, Decimal("24.99"), late, 2)
    assert aggregates(ben) == (late, 0, Decimal("0.00"), None, 0)
    stored = Event.objects.get(idempotency_key="k1")
    assert (stored.subscriber_id, stored.name, stored.occurred_at) == (ana.pk, "purchase", early)
    assert stored.properties == {"amount": "19.99", "currency": "EUR"}


def test_resending_a_batch_is_accepted_and_changes_nothing() -> None:
    ana = SubscriberFactory(external_id="ana")
    batch = [ev("ana", "purchase", "p1", amount="10.00"), ev("ana", "session_start", "s1")]
    event_track_batch(events=batch, now=NOW)
    before = aggregates(ana)

    again = event_track_batch(events=batch, now=NOW + dt.timedelta(minutes=5))

    assert (again.recorded, again.duplicates) == (0, 2)
    assert aggregates(ana) == before
    assert Event.objects.count() == 2


def test_a_key_repeated_inside_one_batch_counts_once() -> None:
    ana = SubscriberFactory(external_id="ana")
    result = event_track_batch(
        events=[ev("ana", "purchase", "same", amount=3), ev("ana", "purchase", "same", amount=3)], now=NOW
    )
    assert (result.received, result.recorded, result.duplicates) == (2, 1, 1)
    assert aggregates(ana)[1:3] == (1, Decimal("3.00"))


def test_only_new_events_of_a_mixed_batch_move_the_aggregates() -> None:
    ana = SubscriberFactory(external_id="ana")
    event_track_batch(events=[ev("ana", "purchase", "old", amount=7)], now=NOW)
    result = event_track_batch(
        events=[ev("ana", "purchase", "old", amount=7), ev("ana", "purchase", "new", amount=1)], now=NOW
    )
    assert (result.recorded, result.duplicates) == (1, 1)
    assert aggregates(ana)[1:3] == (2, Decimal("8.00"))


def test_older_events_never_move_times_backwards_and_old_sessions_do_not_count() -> None:
    ana = SubscriberFactory(external_id="ana")
    event_track_batch(events=[ev("ana", "purchase", "recent", amount=1)], now=NOW)
    long_ago = NOW - dt.timedelta(days=45)
    event_track_batch(
        events=[
            ev("ana", "purchase", "backfill", at=long_ago, amount=2),
            ev("ana", "session_start", "s", at=long_ago),
        ],
        now=NOW,
    )
    last_seen, purchases, spent, last_purchase, sessions = aggregates(ana)
    assert (last_seen, last_purchase) == (NOW, NOW)
    assert (purchases, spent, sessions) == (2, Decimal("3.00"), 0)


def test_an_invalid_item_refuses_the_whole_batch_naming_each_item_and_field() -> None:
    ana = SubscriberFactory(external_id="ana")
    before = aggregates(ana)
    with pytest.raises(EventBatchError) as caught:
        event_track_batch(
            events=[
                ev("ana", "purchase", "ok", amount=1),
                ev("ana", "bad name!", "k2"),
                ev("ana", "purchase", "k3"),
                ev("ana", "purchase", "k4", amount=-5),
                ev("ana", "purchase", "k5", amount=True),
                ev("ana", "x", "k6", at=NOW.replace(tzinfo=None)),
                ev("ana", "x", "k7", at=NOW + dt.timedelta(days=2)),
                ev("ana", "x", "nh:receipt:opened:1"),
                ev("ana", "x", ""),
            ],
            now=NOW,
        )
    fields = [e.field for e in caught.value.errors]
    assert fields == [
        "events[1].name",
        "events[2].properties.amount",
        "events[3].properties.amount",
        "events[4].properties.amount",
        "events[5].occurred_at",
        "events[6].occurred_at",
        "events[7].idempotency_key",
        "events[8].idempotency_key",
    ]
    assert "time zone offset" in caught.value.errors[4].message
    assert caught.value.message.startswith("8 problems in the batch; nothing was saved.")
    assert Event.objects.count() == 0
    assert aggregates(ana) == before


def test_unknown_subscribers_are_named_and_nothing_is_written() -> None:
    SubscriberFactory(external_id="ana")
    with pytest.raises(EventBatchError) as caught:
        event_track_batch(events=[ev("ana", "x", "a"), ev("ghost", "x", "b")], now=NOW)
    assert [(e.field, "identify it first" in e.message) for e in caught.value.errors] == [
        ("events[1].external_id", True)
    ]
    assert Event.objects.count() == 0


def test_batch_size_limit_comes_from_settings(settings: pytest.FixtureRequest) -> None:
    settings.NOTIFYHUB_API_EVENTS_PER_BATCH = 2  # type: ignore[attr-defined]
    SubscriberFactory(external_id="ana")
    with pytest.raises(EventBatchError) as caught:
        event_track_batch(events=[ev("ana", "x", str(i)) for i in range(3)], now=NOW)
    assert caught.value.errors[0].field == "events"
    assert "at most 2" in caught.value.errors[0].message


def test_query_count_does_not_grow_with_the_batch(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    subs = SubscriberFactory.create_batch(50)
    for size in (5, 500):
        batch = [
            ev(subs[i % 50].external_id, "purchase" if i % 3 else "session_start", f"q{size}-{i}", amount=1)
            for i in range(size)
        ]
        # lock subscribers + insert + aggregate update, plus the savepoint pair.
        with django_assert_max_num_queries(5):
            assert event_track_batch(events=batch, now=NOW).recorded == size


def test_receipts_are_events_idempotent_per_delivery_and_kind() -> None:
    ana = SubscriberFactory(external_id="ana")
    first = event_track_receipt(delivery_id=42, kind="opened", external_id="ana", occurred_at=NOW)
    again = event_track_receipt(delivery_id=42, kind="opened", external_id="ana", occurred_at=NOW)
    click = event_track_receipt(
        delivery_id=42,
        kind="clicked",
        external_id="ana",
        occurred_at=NOW,
        properties={"action": "open_offer"},
    )
    assert (first.recorded, again.recorded, click.recorded) == (1, 0, 1)
    opened = Event.objects.get(name="push_opened")
    assert opened.idempotency_key == "nh:receipt:opened:42"
    assert opened.properties == {"delivery_id": 42}
    assert Event.objects.get(name="push_clicked").properties == {"action": "open_offer", "delivery_id": 42}
    assert aggregates(ana)[0] == NOW  # opening a push means the user was there
    with pytest.raises(EventBatchError) as caught:
        event_track_receipt(delivery_id=1, kind="opened", external_id="ghost")
    assert caught.value.errors[0].field == "external_id"


def test_recompute_slides_the_window_and_is_idempotent() -> None:
    ana, ben, cleo = (SubscriberFactory(external_id=x) for x in ("ana", "ben", "cleo"))
    event_track_batch(
        events=[
            ev("ana", "session_start", "a1", at=NOW - dt.timedelta(days=29)),
            ev("ana", "session_start", "a2", at=NOW - dt.timedelta(days=1)),
            ev("ben", "session_start", "b1", at=NOW - dt.timedelta(days=2)),
        ],
        now=NOW,
    )
    # A drifted counter (e.g. written by an older version) is repaired too.
    Subscriber.objects.filter(pk=cleo.pk).update(sessions_30d=7)
    assert [aggregates(s)[4] for s in (ana, ben, cleo)] == [2, 1, 7]

    five_days_later = NOW + dt.timedelta(days=5)
    assert subscribers_recompute_sessions_30d(now=five_days_later) == 2  # ana (a1 aged out) and cleo
    assert [aggregates(s)[4] for s in (ana, ben, cleo)] == [1, 1, 0]
    assert subscribers_recompute_sessions_30d(now=five_days_later) == 0


def test_the_celery_task_runs_the_recompute() -> None:
    ana = SubscriberFactory(external_id="ana")
    Subscriber.objects.filter(pk=ana.pk).update(sessions_30d=3)
    event_track_batch(events=[ev("ana", "session_start", "s", at=timezone.now())])
    assert tasks.subscribers_recompute_sessions_30d.apply().get() == 1
    assert aggregates(ana)[4] == 1


@given(cents=st.integers(min_value=0, max_value=10**12))
def test_parse_amount_round_trips_cents(cents: int) -> None:
    amount = Decimal(cents) / 100
    assert parse_amount(str(amount)) == amount
    assert parse_amount(float(amount)) == amount.quantize(Decimal("0.01"))


@pytest.mark.parametrize("value", [None, "", "abc", "-1", "NaN", "Infinity", True, [], {}, "1e20"])
def test_parse_amount_refuses_what_is_not_a_usable_amount(value: object) -> None:
    assert parse_amount(value) is None
