"""Identify, devices and preference-center links through /api/v1/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import signing
from django.test import Client

from audiences import preference_links
from audiences.models import AttributeDefinition, ConsentRecord, Device, Subscriber, TopicPreference
from audiences.preference_links import PreferenceLinkError
from audiences.services.api_keys import api_key_create
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='test app').plaintext}")


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


# --- identify -------------------------------------------------------------------------


def test_identify_creates_a_subscriber_with_its_initial_consent(api: Client) -> None:
    response = post(
        api,
        "/api/v1/identify",
        {
            "external_id": "cust-1",
            "email": "ana@example.com",
            "first_name": "Ana",
            "language": "pt_BR",
            "timezone": "America/Sao_Paulo",
            "country": "br",
            "interests": ["running", "running", "yoga"],
            "attributes": {"plan": "pro", "age": 31},
            "push_opt_in": False,
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True
    assert (body["language"], body["country"], body["interests"]) == ("pt-br", "BR", ["running", "yoga"])
    ana = Subscriber.objects.get(external_id="cust-1")
    assert (ana.push_opt_in, ana.attributes) == (False, {"plan": "pro", "age": 31})
    record = ConsentRecord.objects.get(subscriber=ana)
    assert (record.field, record.old_value, record.new_value, record.source) == (
        "push_opt_in",
        None,
        False,
        "api",
    )


def test_identify_updates_only_what_was_sent(api: Client) -> None:
    SubscriberFactory(
        external_id="ana", first_name="Ana", city="Berlin", attributes={"plan": "free", "vip": True}
    )
    response = post(
        api,
        "/api/v1/identify",
        {"external_id": "ana", "city": "", "attributes": {"plan": "pro", "vip": None, "score": 9.5}},
    )
    assert response.status_code == 200
    assert response.json()["changed"] == ["city", "attributes"]
    ana = Subscriber.objects.get(external_id="ana")
    assert (ana.first_name, ana.city) == ("Ana", "")
    assert ana.attributes == {"plan": "pro", "score": 9.5}


def test_language_and_consent_changes_land_in_the_ledger_and_repeats_write_nothing(api: Client) -> None:
    SubscriberFactory(external_id="ana", language="en", push_opt_in=True)
    offers = TopicFactory(slug="offers", default_opt_in=True)
    body = {"external_id": "ana", "language": "es", "push_opt_in": False, "topics": {"offers": False}}
    response = post(api, "/api/v1/identify", body)
    assert response.status_code == 200
    assert sorted(response.json()["changed"]) == ["language", "push_opt_in", "topic"]
    records = ConsentRecord.objects.filter(subscriber__external_id="ana")
    assert sorted((r.field, r.old_value, r.new_value, r.source) for r in records) == [
        ("language", "en", "es", "api"),
        ("push_opt_in", True, False, "api"),
        ("topic", True, False, "api"),
    ]
    assert TopicPreference.objects.get(topic=offers).opted_in is False

    again = post(api, "/api/v1/identify", body)
    assert again.json()["changed"] == []
    assert records.count() == 3


def test_every_bad_field_is_reported_and_nothing_is_written(api: Client) -> None:
    AttributeDefinition.objects.create(key="age", type=AttributeDefinition.Type.NUMBER)
    AttributeDefinition.objects.create(key="birthday", type=AttributeDefinition.Type.DATE)
    response = post(
        api,
        "/api/v1/identify",
        {
            "external_id": "new-one",
            "email": "not-an-email",
            "language": "xx",
            "timezone": "Europe/Atlantis",
            "country": "ZZ",
            "attributes": {"age": "thirty", "birthday": "31/12/1990", "bad key!": 1},
            "topics": {"no-such-topic": True},
        },
    )
    assert response.status_code == 400
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {
        "email",
        "language",
        "timezone",
        "country",
        "attributes.age",
        "attributes.birthday",
        "attributes.bad key!",
        "topics.no-such-topic",
    }
    assert "Europe/Berlin" in errors["timezone"]
    assert "YYYY-MM-DD" in errors["attributes.birthday"]
    assert "en" in errors["language"]
    assert not Subscriber.objects.exists()
    assert not ConsentRecord.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"external_id": "a", "push_opt_in": "yes"}, "push_opt_in"),
        ({"external_id": "a", "topics": {"offers": 1}}, "topics.offers"),
        ({"external_id": "", "city": "x"}, "external_id"),
        ({"external_id": "a", "attributes": {"tags": ["a", "b"]}}, "attributes.tags"),
        ({"city": "x"}, "external_id"),
    ],
)
def test_type_errors_name_the_field(api: Client, body: dict[str, Any], field: str) -> None:
    response = post(api, "/api/v1/identify", body)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Subscriber.objects.exists()


# --- devices --------------------------------------------------------------------------


def test_register_then_register_again_is_idempotent(api: Client) -> None:
    SubscriberFactory(external_id="ana")
    body = {
        "external_id": "ana",
        "token": "tok-1",
        "platform": "ios",
        "locale": "pt_br",
        "app_version": "3.2",
    }
    first = post(api, "/api/v1/devices", body)
    assert first.status_code == 201
    assert first.json()["locale"] == "pt-BR"
    second = post(api, "/api/v1/devices", body)
    assert second.status_code == 200
    assert (second.json()["moved"], second.json()["reactivated"]) == (False, False)
    device = Device.objects.get()
    assert (device.platform, device.locale, device.app_version, device.is_active) == (
        "ios",
        "pt-BR",
        "3.2",
        True,
    )


def test_a_token_seen_on_another_subscriber_moves_and_an_invalidated_one_comes_back(api: Client) -> None:
    ana, ben = SubscriberFactory(external_id="ana"), SubscriberFactory(external_id="ben")
    device = DeviceFactory(subscriber=ana, token="shared-phone", platform="android")
    device_count = Device.objects.count()
    Device.objects.filter(pk=device.pk).update(
        is_active=False, invalidated_at="2025-01-01T00:00:00Z", invalidation_reason="unregistered"
    )
    response = post(
        api, "/api/v1/devices", {"external_id": "ben", "token": "shared-phone", "platform": "android"}
    )
    assert response.status_code == 200
    assert (response.json()["moved"], response.json()["reactivated"]) == (True, True)
    device.refresh_from_db()
    assert (device.subscriber_id, device.is_active, device.invalidation_reason) == (ben.pk, True, "")
    assert device.invalidated_at is None
    assert Device.objects.count() == device_count


def test_remove_marks_the_device_inactive_and_is_idempotent(api: Client) -> None:
    device = DeviceFactory(token="bye")
    first = post(api, "/api/v1/devices/remove", {"token": "bye"})
    assert (first.status_code, first.json()) == (200, {"removed": True})
    device.refresh_from_db()
    assert (device.is_active, device.invalidation_reason) == (False, "removed")
    assert device.invalidated_at is not None
    assert post(api, "/api/v1/devices/remove", {"token": "bye"}).json() == {"removed": False}
    missing = post(api, "/api/v1/devices/remove", {"token": "never-seen"})
    assert missing.status_code == 404
    assert "No device has this token" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"external_id": "ghost", "token": "t", "platform": "ios"}, ["external_id"]),
        ({"external_id": "ana", "token": "t", "platform": "blackberry"}, ["platform"]),
        (
            {"external_id": "ana", "token": "has space", "platform": "ios", "locale": "english!"},
            ["token", "locale"],
        ),
        ({"external_id": "ana", "platform": "ios"}, ["token"]),
    ],
)
def test_bad_registrations_are_400_and_write_nothing(
    api: Client, body: dict[str, Any], fields: list[str]
) -> None:
    SubscriberFactory(external_id="ana")
    response = post(api, "/api/v1/devices", body)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == fields
    assert not Device.objects.exists()


# --- preference-center links ----------------------------------------------------------


def test_the_preference_url_is_absolute_signed_and_names_the_subscriber(api: Client) -> None:
    ana = SubscriberFactory(external_id="ana@shop")
    response = api.get("/api/v1/preference-url", {"external_id": "ana@shop"})
    assert response.status_code == 200
    url = response.json()["url"]
    assert url.startswith("http://testserver/preferences/") and url.endswith("/")
    token = url.removeprefix("http://testserver/preferences/").rstrip("/")
    assert preference_links.verify_token(token=token) == ana.pk
    assert "ana" not in token  # no personal data in the link
    assert api.get("/api/v1/preference-url", {"external_id": "ghost"}).status_code == 404
    assert api.get("/api/v1/preference-url").status_code == 400


def test_tampered_expired_or_foreign_tokens_are_refused() -> None:
    ana = SubscriberFactory()
    token = preference_links.make_token(subscriber=ana)
    with pytest.raises(PreferenceLinkError, match="not valid"):
        preference_links.verify_token(token=token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(PreferenceLinkError, match="expired"):
        preference_links.verify_token(token=token, max_age=-1)
    # Signed with the same key but another salt (another feature's token): refused.
    with pytest.raises(PreferenceLinkError, match="not valid"):
        preference_links.verify_token(token=signing.dumps({"s": ana.pk}, salt="something-else"))
    assert preference_links.verify_token(token=token) == ana.pk
