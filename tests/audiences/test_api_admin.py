"""The admin side of the API: keys shown once, revoked after confirmation; events read-only."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from audiences.models import ApiKey, Event
from audiences.services.api_keys import api_key_authenticate, api_key_create
from audiences.services.events import EventInput, event_track_batch
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audiences_apikey_changelist")


def test_creating_a_key_shows_the_plaintext_once_and_stores_only_its_hash(
    admin_client_logged_in: Client, superuser: Any
) -> None:
    response = admin_client_logged_in.post(
        reverse("admin:audiences_apikey_add"), {"name": "iOS app", "rate_limit_per_minute": 120}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    match = re.search(r'id="api-key-plaintext"[^>]*>(nh_[0-9a-f]{8}_[A-Za-z0-9_-]+)<', html)
    assert match, html[:2000]
    plaintext = match.group(1)
    key = ApiKey.objects.get()
    assert (key.name, key.rate_limit_per_minute, key.created_by) == ("iOS app", 120, superuser)
    assert api_key_authenticate(plaintext=plaintext) == key
    assert plaintext not in str(ApiKey.objects.values().get())

    # Never again: not on the list, not on the change page.
    for url in (CHANGELIST, reverse("admin:audiences_apikey_change", args=[key.pk])):
        page = admin_client_logged_in.get(url).content.decode()
        assert key.prefix in page
        assert plaintext not in page


def test_revoking_asks_first_then_revokes_and_the_api_answers_403(admin_client_logged_in: Client) -> None:
    SubscriberFactory(external_id="ana")
    created = api_key_create(name="old app")
    keep = api_key_create(name="current app")
    selection = {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [created.api_key.pk]}

    confirm = admin_client_logged_in.post(CHANGELIST, selection)
    assert confirm.status_code == 200
    assert "Revoke these API keys?" in confirm.content.decode()
    assert created.api_key.prefix in confirm.content.decode()
    assert ApiKey.objects.get(pk=created.api_key.pk).revoked_at is None  # nothing happened yet

    done = admin_client_logged_in.post(CHANGELIST, {**selection, "post": "yes"}, follow=True)
    assert "Revoked 1 API key." in done.content.decode()
    assert ApiKey.objects.get(pk=created.api_key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=keep.api_key.pk).revoked_at is None

    client = Client(HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")
    assert client.get("/api/v1/preference-url", {"external_id": "ana"}).status_code == 403
    other = Client(HTTP_AUTHORIZATION=f"Bearer {keep.plaintext}")
    assert other.get("/api/v1/preference-url", {"external_id": "ana"}).status_code == 200


def test_keys_cannot_be_deleted(admin_client_logged_in: Client) -> None:
    key = api_key_create(name="x").api_key
    response = admin_client_logged_in.get(reverse("admin:audiences_apikey_delete", args=[key.pk]))
    assert response.status_code == 403


def test_event_admin_is_read_only_filters_by_name_and_date_without_n_plus_1(
    admin_client_logged_in: Client, django_assert_max_num_queries: Any
) -> None:
    subs = SubscriberFactory.create_batch(30)
    now = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
    event_track_batch(
        events=[
            EventInput(
                external_id=s.external_id,
                name="purchase" if i % 2 else "level_completed",
                occurred_at=now - dt.timedelta(days=i),
                idempotency_key=f"e{i}",
                properties={"amount": 1} if i % 2 else {},
            )
            for i, s in enumerate(subs)
        ],
        now=now,
    )
    url = reverse("admin:audiences_event_changelist")
    with django_assert_max_num_queries(12):
        page = admin_client_logged_in.get(url)
    assert page.status_code == 200
    assert page.content.decode().count(subs[0].external_id) >= 1

    filtered = admin_client_logged_in.get(
        url,
        {
            "name": "purchase",
            "occurred_at_from_0": "2025-05-25",
            "occurred_at_from_1": "00:00",
            "occurred_at_to_0": "2025-06-02",
            "occurred_at_to_1": "00:00",
        },
    )
    assert filtered.status_code == 200
    shown = filtered.context["cl"].result_list
    expected = Event.objects.filter(name="purchase", occurred_at__gte=dt.datetime(2025, 5, 25, tzinfo=dt.UTC))
    assert sorted(e.pk for e in shown) == sorted(expected.values_list("pk", flat=True))
    assert expected.exists() and len(shown) < 30

    event = Event.objects.first()
    assert event is not None
    assert admin_client_logged_in.get(reverse("admin:audiences_event_add")).status_code == 403
    detail = admin_client_logged_in.get(reverse("admin:audiences_event_change", args=[event.pk]))
    assert detail.status_code == 200
    assert 'name="name"' not in detail.content.decode()  # shown, not editable


def test_the_sidebar_links_api_keys_and_events(admin_client_logged_in: Client) -> None:
    html = admin_client_logged_in.get(reverse("admin:index")).content.decode()
    assert reverse("admin:audiences_apikey_changelist") in html
    assert reverse("admin:audiences_event_changelist") in html
