"""POST /api/v1/events, through the real HTTP stack (receipts: tests/delivery/test_receipts.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from audiences.models import Event, Subscriber
from audiences.services.api_keys import api_key_create
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='test app').plaintext}")


def post(client: Client, path: str, body: Any, **extra: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


def event(external_id: str, key: str, name: str = "purchase", **properties: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "name": name,
        "occurred_at": "2025-05-01T12:00:00+02:00",
        "idempotency_key": key,
        "properties": properties,
    }


def test_a_batch_is_recorded_and_a_resend_is_accepted_and_ignored(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    batch = {"events": [event("ana", "k1", amount=12.5), event("ana", "k2", name="session_start")]}
    first = post(api, "/api/v1/events", batch)
    assert first.status_code == 200
    assert first.json() == {"received": 2, "recorded": 2, "duplicates": 0}
    again = post(api, "/api/v1/events", batch)
    assert again.json() == {"received": 2, "recorded": 0, "duplicates": 2}
    ana = Subscriber.objects.get(external_id="ana")
    assert (ana.purchase_count, ana.total_spent) == (1, Decimal("12.50"))
    assert (
        ana.last_purchase_at is not None and ana.last_purchase_at.isoformat() == "2025-05-01T10:00:00+00:00"
    )


def test_occurred_at_defaults_to_the_time_received(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    body = {"events": [{"external_id": "ana", "name": "app_open", "idempotency_key": "x"}]}
    assert post(api, "/api/v1/events", body).status_code == 200
    assert Event.objects.get().occurred_at is not None


def test_type_errors_name_the_item_and_field_and_save_nothing(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    body = {
        "events": [
            event("ana", "ok", amount=1),
            {**event("ana", "k2"), "occurred_at": "yesterday"},
            {"external_id": "ana", "name": "x"},
        ]
    }
    response = post(api, "/api/v1/events", body)
    assert response.status_code == 400
    payload = response.json()
    assert "nothing was saved" in payload["detail"]
    by_field = {e["field"]: e["message"] for e in payload["errors"]}
    assert set(by_field) == {"events[1].occurred_at", "events[2].idempotency_key"}
    assert "2025-05-01T12:00:00Z" in by_field["events[1].occurred_at"]
    assert by_field["events[2].idempotency_key"] == "This field is required."
    assert Event.objects.count() == 0


def test_meaning_errors_name_the_item_and_field_and_save_nothing(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    body = {"events": [event("ana", "ok", amount=1), event("ghost", "k2", amount=1), event("ana", "k3")]}
    response = post(api, "/api/v1/events", body)
    assert response.status_code == 400
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["events[2].properties.amount"]  # checked first: the batch itself
    assert Event.objects.count() == 0
    response = post(api, "/api/v1/events", {"events": body["events"][:2]})
    assert [e["field"] for e in response.json()["errors"]] == ["events[1].external_id"]
    assert Event.objects.count() == 0
    assert Subscriber.objects.get(external_id="ana").purchase_count == 0


def test_malformed_json_is_a_clear_400(api: Client) -> None:
    response = api.post("/api/v1/events", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_more_events_than_the_batch_limit_is_a_400(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    limit = settings.NOTIFYHUB_API_EVENTS_PER_BATCH
    body = {"events": [event("ana", f"k{i}", name="tap") for i in range(limit + 1)]}
    response = post(api, "/api/v1/events", body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "events", "message": f"Send at most {limit} events per request; split the batch."}
    ]
    assert Event.objects.count() == 0


def test_an_oversized_body_is_refused_with_413_before_it_is_read(api: Client, settings: Any) -> None:
    settings.NOTIFYHUB_API_MAX_BODY_BYTES = 2_000
    SubscriberFactory(external_id="ana")
    body = {"events": [event("ana", f"k{i}", name="tap", padding="x" * 100) for i in range(20)]}
    response = post(api, "/api/v1/events", body)
    assert response.status_code == 413
    assert "limit is 2,000 bytes" in response.json()["detail"]
    assert Event.objects.count() == 0
    # The header alone decides: even a lying Content-Length with a tiny body gets 413.
    lying = api.post("/api/v1/events", "{}", content_type="application/json", CONTENT_LENGTH="999999")
    assert lying.status_code == 413
    # And it is checked before authentication: nothing is parsed for anyone.
    anonymous = post(Client(), "/api/v1/events", body)
    assert anonymous.status_code == 413


def test_bodies_between_djangos_limit_and_the_apis_are_accepted(api: Client) -> None:
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB default) must not answer first."""
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= settings.NOTIFYHUB_API_MAX_BODY_BYTES
    SubscriberFactory(external_id="ana")
    body = {"events": [event("ana", f"k{i}", name="tap", blob="y" * 3_000) for i in range(1_000)]}
    raw = json.dumps(body)
    assert 2_621_440 < len(raw) < settings.NOTIFYHUB_API_MAX_BODY_BYTES
    response = api.post("/api/v1/events", raw, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["recorded"] == 1_000


@pytest.mark.parametrize("size", [10, 100, 1_000])
def test_the_hot_path_makes_a_bounded_number_of_queries(
    api: Client,
    size: int,
    django_assert_max_num_queries: Any,
) -> None:
    subs = SubscriberFactory.create_batch(100)
    post(api, "/api/v1/events", {"events": [event(subs[0].external_id, "warm-up")]})  # marks the key used
    body = {
        "events": [
            event(subs[i % 100].external_id, f"e{i}", name="session_start" if i % 2 else "purchase", amount=2)
            for i in range(size)
        ]
    }
    # key lookup + (savepoint, lock subscribers, insert, update aggregates, release)
    with django_assert_max_num_queries(6):
        response = post(api, "/api/v1/events", body)
    assert response.json()["recorded"] == size


# The receipts (POST /api/v1/deliveries/{id}/opened|clicked) stamp the delivery ledger:
# they are tested with it, in tests/delivery/test_receipts.py.
