"""Receipts: opens and clicks through the API and tracked links, and conversions."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.core.validators import MaxValueValidator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audiences.models import Event, Subscriber
from audiences.services.api_keys import api_key_create, api_key_revoke
from audiences.services.events import EventInput, event_track_batch
from campaigns.models import Campaign
from delivery import receipts
from delivery.models import Delivery, Run
from delivery.receipts import (
    CLICK_SALT,
    click_tracking_url,
    conversions_update,
    delivery_click_url,
    receipt_record,
    run_conversions,
)
from tests.factories import CampaignFactory, DeviceFactory, SubscriberFactory, VariantFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
SENT = NOW - dt.timedelta(hours=10)
TARGET = "https://shop.example/offers?id=7&utm_source=push"


@pytest.fixture
def api() -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='test app').plaintext}")


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def make_run(campaign: Campaign | None = None, **fields: Any) -> Run:
    fields.setdefault("status", Run.Status.SENDING)
    fields.setdefault("occurrence", SENT + dt.timedelta(seconds=Run.objects.count()))  # unique per campaign
    return Run.objects.create(campaign=campaign or CampaignFactory(), **fields)


def make_delivery(run: Run, subscriber: Subscriber | None = None, **fields: Any) -> Delivery:
    device = DeviceFactory(subscriber=subscriber or SubscriberFactory())
    fields.setdefault("status", Delivery.Status.SENT)
    fields.setdefault("scheduled_for", SENT)
    if fields["status"] == Delivery.Status.SENT:
        fields.setdefault("sent_at", SENT)
    return Delivery.objects.create(run=run, device=device, subscriber=device.subscriber, **fields)


def sent_to(external_id: str) -> Delivery:
    return make_delivery(make_run(), SubscriberFactory(external_id=external_id))


def stamps(delivery: Delivery) -> tuple[dt.datetime | None, dt.datetime | None]:
    delivery.refresh_from_db()
    return delivery.opened_at, delivery.clicked_at


# -- opens and clicks through the API -------------------------------------------------------


def test_an_open_stamps_the_ledger_once_and_records_the_event(api: Client) -> None:
    delivery = sent_to("ana")
    at = NOW - dt.timedelta(hours=1)
    path = f"/api/v1/deliveries/{delivery.pk}/opened"

    first = post(api, path, {"external_id": "ana", "occurred_at": at.isoformat()})

    assert (first.status_code, first.json()) == (200, {"recorded": True})
    assert stamps(delivery) == (at, None)
    again = post(api, path, {"external_id": "ana"})  # later, without a time: the first one wins
    assert (again.status_code, again.json()) == (200, {"recorded": False})
    assert stamps(delivery) == (at, None)
    event = Event.objects.get()
    assert (event.name, event.properties, event.idempotency_key) == (
        "push_opened",
        {"delivery_id": delivery.pk},
        f"nh:receipt:opened:{delivery.pk}",
    )


def test_a_click_implies_an_open(api: Client) -> None:
    delivery = sent_to("ana")
    at = NOW - dt.timedelta(minutes=5)
    clicked = post(
        api,
        f"/api/v1/deliveries/{delivery.pk}/clicked",
        {"external_id": "ana", "occurred_at": at.isoformat(), "properties": {"action": "buy"}},
    )
    assert clicked.json() == {"recorded": True}
    assert stamps(delivery) == (at, at)
    # The app reports the open afterwards: its event is new, the ledger keeps the click's time.
    opened = post(api, f"/api/v1/deliveries/{delivery.pk}/opened", {"external_id": "ana"})
    assert opened.json() == {"recorded": True}
    assert stamps(delivery) == (at, at)
    assert post(api, f"/api/v1/deliveries/{delivery.pk}/clicked", {"external_id": "ana"}).json() == {
        "recorded": False
    }
    assert sorted(Event.objects.values_list("name", "properties")) == [
        ("push_clicked", {"action": "buy", "delivery_id": delivery.pk}),
        ("push_opened", {"delivery_id": delivery.pk}),
    ]


def test_a_click_after_an_open_keeps_the_open_time(api: Client) -> None:
    delivery = sent_to("ana")
    opened_at, clicked_at = NOW - dt.timedelta(minutes=9), NOW - dt.timedelta(minutes=2)
    post(
        api,
        f"/api/v1/deliveries/{delivery.pk}/opened",
        {"external_id": "ana", "occurred_at": opened_at.isoformat()},
    )
    post(
        api,
        f"/api/v1/deliveries/{delivery.pk}/clicked",
        {"external_id": "ana", "occurred_at": clicked_at.isoformat()},
    )
    assert stamps(delivery) == (opened_at, clicked_at)


def test_an_unknown_delivery_is_404_and_records_nothing(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    response = post(api, "/api/v1/deliveries/987654/opened", {"external_id": "ana"})
    assert response.status_code == 404
    assert response.json() == {
        "detail": "No delivery has the id 987654: send the nh_delivery_id from the push's data.",
        "errors": [],
    }
    assert not Event.objects.exists()


def test_another_subscribers_receipt_is_refused(api: Client) -> None:
    delivery = sent_to("ana")
    SubscriberFactory(external_id="bob")
    response = post(api, f"/api/v1/deliveries/{delivery.pk}/clicked", {"external_id": "bob"})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["external_id"]
    assert stamps(delivery) == (None, None)
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/deliveries/0/opened", {"external_id": "ana"}, "delivery_id"),
        ("/api/v1/deliveries/{id}/clicked", {}, "external_id"),
        ("/api/v1/deliveries/abc/clicked", {"external_id": "ana"}, "delivery_id"),
        ("/api/v1/deliveries/{id}/opened", {"external_id": "ana", "occurred_at": "soon"}, "occurred_at"),
        (
            "/api/v1/deliveries/{id}/opened",
            {"external_id": "ana", "occurred_at": (NOW + dt.timedelta(days=2)).isoformat()},
            "occurred_at",
        ),
    ],
)
def test_bad_receipts_are_400_with_the_field_and_stamp_nothing(
    api: Client, path: str, body: dict[str, Any], field: str
) -> None:
    delivery = sent_to("ana")
    response = post(api, path.format(id=delivery.pk), body)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert stamps(delivery) == (None, None)
    assert not Event.objects.exists()


def test_receipts_need_a_valid_api_key() -> None:
    delivery = sent_to("ana")
    path = f"/api/v1/deliveries/{delivery.pk}/opened"
    assert post(Client(), path, {"external_id": "ana"}).status_code == 401
    assert (
        post(Client(HTTP_AUTHORIZATION="Bearer nh_wrong_key"), path, {"external_id": "ana"}).status_code
        == 401
    )
    created = api_key_create(name="old app")
    api_key_revoke(api_key=created.api_key)
    revoked = post(Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}"), path, {"external_id": "ana"})
    assert revoked.status_code == 403
    assert stamps(delivery) == (None, None)
    assert not Event.objects.exists()


def test_a_receipt_takes_a_bounded_number_of_queries(api: Client, django_assert_max_num_queries: Any) -> None:
    delivery = sent_to("ana")
    post(api, f"/api/v1/deliveries/{sent_to('bob').pk}/opened", {"external_id": "bob"})  # warm the key
    # key, savepoint, delivery, (savepoint, lock, insert, aggregates, release), stamp, release
    with django_assert_max_num_queries(11):
        response = post(api, f"/api/v1/deliveries/{delivery.pk}/clicked", {"external_id": "ana"})
    assert response.json() == {"recorded": True}


def test_the_operations_keep_their_public_paths_and_ids() -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    for kind in ("opened", "clicked"):
        operation = schema["paths"][f"/api/v1/deliveries/{{delivery_id}}/{kind}"]["post"]
        assert operation["operationId"] == f"audiences_api_routes_delivery_{kind}"
        assert operation["tags"] == ["receipts"]
        assert {"200", "400", "401", "403", "404", "429"} <= set(operation["responses"])
        assert operation["security"] == [{"ApiKeyAuth": []}]


# -- tracked click links --------------------------------------------------------------------


def test_a_tracked_link_is_absolute_signed_and_on_the_public_url(settings: Any) -> None:
    settings.NOTIFYHUB_PUBLIC_URL = "https://push.example.com/"
    url = click_tracking_url(delivery_id=42, target=TARGET)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "push.example.com")
    assert parts.path == delivery_click_url(delivery_id=42, target=TARGET)
    token = parts.path.removeprefix("/r/").removesuffix("/")
    assert reverse("delivery:click", args=[token]) == parts.path
    assert signing.loads(token, salt=CLICK_SALT) == {"d": 42, "u": TARGET}


@pytest.mark.parametrize(
    "target", ["", "myapp://offers/7", "/relative/path", "javascript:alert(1)", "https://"]
)
def test_only_web_addresses_are_wrapped(target: str) -> None:
    assert click_tracking_url(delivery_id=42, target=target) == target
    with pytest.raises(ValueError, match="only absolute http"):
        delivery_click_url(delivery_id=42, target=target)
    assert click_tracking_url(delivery_id=None, target=TARGET) == TARGET  # no ledger row (a test send)


def test_the_default_public_url_is_local(settings: Any) -> None:
    del settings.NOTIFYHUB_PUBLIC_URL
    assert click_tracking_url(delivery_id=1, target=TARGET).startswith("http://localhost:8000/r/")


def test_following_a_link_redirects_to_its_target_and_stamps_the_click(client: Client) -> None:
    delivery = sent_to("ana")
    path = delivery_click_url(delivery_id=delivery.pk, target=TARGET)

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == TARGET
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-cache" in response["Cache-Control"]
    opened_at, clicked_at = stamps(delivery)
    assert clicked_at is not None and opened_at == clicked_at
    event = Event.objects.get()
    assert (event.name, event.properties) == ("push_clicked", {"source": "link", "delivery_id": delivery.pk})
    # Tapped again: the same redirect, the first click stays.
    again = client.get(path)
    assert (again.status_code, again["Location"]) == (302, TARGET)
    assert stamps(delivery) == (opened_at, clicked_at)
    assert Event.objects.count() == 1


def _tampered(token: str) -> list[str]:
    value, signature = token.rsplit(":", 1)
    forged_target = signing.dumps({"d": 1, "u": "https://evil.example/"}, salt="another.salt", compress=True)
    return [
        f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # signature changed
        f"{value[:-2]}:{signature}",  # payload changed
        token[: len(token) // 2],  # cut short
        forged_target,  # signed, but not for click links
        "not-a-token",
    ]


def test_a_tampered_link_is_a_400_page_and_records_nothing(client: Client) -> None:
    delivery = sent_to("ana")
    token = delivery_click_url(delivery_id=delivery.pk, target=TARGET).split("/")[2]
    for bad in _tampered(token):
        response = client.get(f"/r/{bad}/")
        assert response.status_code == 400, bad
        assert "Location" not in response
        assert b"This link does not work" in response.content
        assert b"evil.example" not in response.content
    assert stamps(delivery) == (None, None)
    assert not Event.objects.exists()


def test_the_link_is_not_an_open_redirect(client: Client) -> None:
    delivery = sent_to("ana")
    path = delivery_click_url(delivery_id=delivery.pk, target=TARGET)
    # Query parameters and another target cannot steer it: only the signed target counts.
    response = client.get(path, {"next": "https://evil.example/", "u": "https://evil.example/"})
    assert response["Location"] == TARGET
    # A signed token whose target is not a web address is refused (defence in depth).
    sneaky = signing.dumps({"d": delivery.pk, "u": "javascript:alert(1)"}, salt=CLICK_SALT, compress=True)
    assert client.get(f"/r/{sneaky}/").status_code == 400
    assert client.post(path).status_code == 405


def test_a_link_to_a_deleted_delivery_still_leads_to_its_target(client: Client) -> None:
    path = delivery_click_url(delivery_id=987654, target=TARGET)
    response = client.get(path)
    assert (response.status_code, response["Location"]) == (302, TARGET)
    assert not Event.objects.exists()


def test_receipt_record_with_no_external_id_uses_the_deliverys_subscriber() -> None:
    delivery = sent_to("ana")
    result = receipt_record(delivery_id=delivery.pk, kind="opened")
    assert result.recorded and result.stamped and result.event_recorded
    assert Event.objects.get().subscriber.external_id == "ana"


# -- conversions ----------------------------------------------------------------------------


def track(subscriber: Subscriber, name: str, at: dt.datetime, key: str) -> None:
    event_track_batch(
        events=[
            EventInput(
                external_id=subscriber.external_id,
                name=name,
                occurred_at=at,
                idempotency_key=key,
                properties={"amount": 10} if name == "purchase" else {},
            )
        ]
    )


@pytest.fixture
def goal_run() -> Run:
    campaign = CampaignFactory(conversion_event="purchase", conversion_window_hours=2)
    VariantFactory(campaign=campaign)
    return make_run(campaign, status=Run.Status.COMPLETED, finished_at=SENT + dt.timedelta(minutes=5))


def test_conversions_count_the_goal_event_inside_the_window_only(goal_run: Run) -> None:
    hour = dt.timedelta(hours=1)
    inside = make_delivery(goal_run)
    track(inside.subscriber, "purchase", SENT + 1.5 * hour, "a2")
    track(inside.subscriber, "purchase", SENT + 0.5 * hour, "a1")  # the first one in the window counts
    track(inside.subscriber, "purchase", SENT + 5 * hour, "a3")
    after = make_delivery(goal_run)
    track(after.subscriber, "purchase", SENT + 2 * hour, "b1")  # the window is [sent, sent + 2 h)
    before = make_delivery(goal_run)
    track(before.subscriber, "purchase", SENT - 0.1 * hour, "c1")
    other_goal = make_delivery(goal_run)
    track(other_goal.subscriber, "add_to_cart", SENT + 0.5 * hour, "d1")
    not_sent = make_delivery(goal_run, status=Delivery.Status.SUPPRESSED, reason="opt_out")
    track(not_sent.subscriber, "purchase", SENT + 0.5 * hour, "e1")
    other_run = make_delivery(make_run(goal_run.campaign), subscriber=inside.subscriber)

    assert run_conversions(run_id=goal_run.pk, now=NOW) == 1

    converted = dict(Delivery.objects.filter(run=goal_run).values_list("pk", "converted_at"))
    assert converted == {
        inside.pk: SENT + 0.5 * hour,
        after.pk: None,
        before.pk: None,
        other_goal.pk: None,
        not_sent.pk: None,
    }
    other_run.refresh_from_db()
    assert other_run.converted_at is None  # another run: not asked


def test_the_control_group_converts_after_the_time_it_would_have_received_it(goal_run: Run) -> None:
    hour = dt.timedelta(hours=1)
    due_at = SENT + 3 * hour  # e.g. its local time came later
    held = make_delivery(goal_run, is_control=True, status=Delivery.Status.SUPPRESSED, scheduled_for=due_at)
    track(held.subscriber, "purchase", due_at + 0.25 * hour, "h1")
    early = make_delivery(goal_run, is_control=True, status=Delivery.Status.SUPPRESSED, scheduled_for=due_at)
    track(early.subscriber, "purchase", due_at - 0.25 * hour, "h2")  # after SENT, before its own time
    future = make_delivery(
        goal_run, is_control=True, status=Delivery.Status.QUEUED, scheduled_for=NOW + dt.timedelta(minutes=30)
    )
    track(future.subscriber, "purchase", NOW, "h3")

    assert run_conversions(run_id=goal_run.pk, now=NOW) == 1

    held.refresh_from_db()
    early.refresh_from_db()
    future.refresh_from_db()
    assert held.converted_at == due_at + 0.25 * hour
    assert early.converted_at is None and future.converted_at is None


def test_conversions_are_one_update_and_idempotent(goal_run: Run, django_assert_num_queries: Any) -> None:
    deliveries = [make_delivery(goal_run) for _ in range(5)]
    for index, delivery in enumerate(deliveries[:3]):
        track(delivery.subscriber, "purchase", SENT + dt.timedelta(minutes=10 + index), f"p{index}")

    with CaptureQueriesContext(connection) as captured, django_assert_num_queries(2):
        assert run_conversions(run_id=goal_run.pk, now=NOW) == 3
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and "EXISTS" in updates[0].upper()

    before = dict(Delivery.objects.values_list("pk", "converted_at"))
    track(deliveries[0].subscriber, "purchase", SENT + dt.timedelta(minutes=1), "earlier-but-late")
    assert run_conversions(run_id=goal_run.pk, now=NOW) == 0  # a stamped row is never moved
    assert dict(Delivery.objects.values_list("pk", "converted_at")) == before


def test_a_campaign_without_a_goal_or_an_unknown_run_converts_nothing() -> None:
    run = make_run(CampaignFactory(conversion_event=""))
    delivery = make_delivery(run)
    track(delivery.subscriber, "purchase", SENT + dt.timedelta(minutes=1), "x")
    assert run_conversions(run_id=run.pk) == 0
    assert run_conversions(run_id=987654) == 0


def test_the_periodic_pass_covers_the_runs_whose_window_is_open(goal_run: Run) -> None:
    minute = dt.timedelta(minutes=1)
    finished_long_ago = make_run(
        goal_run.campaign, status=Run.Status.COMPLETED, finished_at=NOW - dt.timedelta(days=5)
    )
    test_run = make_run(goal_run.campaign, is_test=True, status=Run.Status.COMPLETED, finished_at=SENT)
    subscriber = SubscriberFactory()
    rows = [make_delivery(run, subscriber=subscriber) for run in (goal_run, finished_long_ago, test_run)]
    track(subscriber, "purchase", SENT + minute, "y")

    assert conversions_update(now=NOW) == 1

    assert [Delivery.objects.get(pk=row.pk).converted_at for row in rows] == [SENT + minute, None, None]
    assert conversions_update(now=NOW) == 0


def test_the_periodic_pass_looks_back_over_the_longest_window_a_campaign_may_have() -> None:
    field = Campaign._meta.get_field("conversion_window_hours")
    longest = max(v.limit_value for v in field.validators if isinstance(v, MaxValueValidator))
    assert dt.timedelta(hours=longest) <= receipts.MAX_CONVERSION_WINDOW
