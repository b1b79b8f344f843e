"""Download and erase one person's data: the services, their contract, and the admin actions."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audiences.models import ConsentRecord, Device, Event, SegmentMember, Subscriber, Topic, TopicPreference
from audiences.selectors import segment_estimate, segment_subscribers
from audiences.services import (
    ConsentContext,
    EventInput,
    SubscriberErased,
    device_register,
    event_track_batch,
    external_id_is_erased,
    external_ids_erased,
    register_export_section,
    segment_create_static,
    segment_save,
    subscriber_erase,
    subscriber_export,
    subscriber_identify,
    subscriber_update_preferences,
)
from audiences.services.privacy import ERASED_FIELD, erased_external_id
from campaigns.roles import MARKETER, VIEWER
from campaigns.selectors import campaign_audience
from delivery import privacy as delivery_privacy
from delivery.models import Delivery, OutboxMessage, Run
from tests.factories import CampaignFactory, SubscriberFactory, TopicFactory, UserFactory

pytestmark = pytest.mark.django_db

API = ConsentContext(source="api", ip_address="203.0.113.9", user_agent="TestApp/1.0")
PREFERENCE_CENTER = ConsentContext(source="preference_center", ip_address="198.51.100.7")
NOW = timezone.now()
TOKEN = "fcm-user-ada-0"  # ada()'s first device token: fcm-<external id>-<n>

SPAIN = {
    "match": "all",
    "conditions": [{"field": "country", "op": "in", "value": ["ES"]}],
    "exclude": {"match": "any", "conditions": []},
}


class any_text:  # reads like a value in the expected dict
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


@pytest.fixture(autouse=True)
def _delivery_sections() -> None:
    # What DeliveryConfig.ready() does; idempotent, so harmless once it is wired there.
    delivery_privacy.register()


def ada(external_id: str = "user-ada", *, events: int = 3, devices: int = 1) -> Subscriber:
    """A subscriber built through the real actions: identify, topic choice, devices, events."""
    offers = TopicFactory(slug="offers", name="Offers", name_en="Offers")
    subscriber = subscriber_identify(
        external_id=external_id,
        changes={
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "city": "Madrid",
            "country": "ES",
            "timezone": "Europe/Madrid",
            "language": "es",
            "interests": ["maths", "engines"],
            "attributes": {"plan": "pro", "age": 36},
        },
        context=API,
    ).subscriber
    subscriber_update_preferences(
        subscriber=subscriber,
        context=PREFERENCE_CENTER,
        topics={offers: False},
        quiet_hours=(dt.time(22), dt.time(7)),
    )
    for n in range(devices):
        device_register(
            subscriber=subscriber,
            token=f"fcm-{external_id}-{n}",
            platform="ios",
            locale="es-ES",
            app_version="3.2.1",
        )
    if events:
        event_track_batch(
            events=[
                EventInput(
                    external_id=external_id,
                    name="purchase" if n % 2 == 0 else "level_completed",
                    occurred_at=NOW - dt.timedelta(minutes=n),
                    idempotency_key=f"{external_id}-{n}",
                    properties={"amount": "9.99", "sku": "BOOK-1"} if n % 2 == 0 else {"level": n},
                )
                for n in range(events)
            ]
        )
    subscriber.refresh_from_db()
    return subscriber


def delivered(subscriber: Subscriber, *, n: int = 1) -> list[Delivery]:
    """Ledger rows (and outbox copies) of ``n`` runs that reached the subscriber's first device."""
    device = subscriber.devices.order_by("pk").first()
    assert device is not None
    rows = []
    for i in range(n):
        run = Run.objects.create(campaign=CampaignFactory(), occurrence=NOW - dt.timedelta(hours=i))
        row = Delivery.objects.create(
            run=run,
            device=device,
            subscriber=subscriber,
            scheduled_for=run.occurrence,
            status=Delivery.Status.SENT,
            sent_at=run.occurrence,
            language="es",
        )
        OutboxMessage.objects.create(
            delivery=row,
            device=device,
            message_id=f"outbox-{row.pk}",
            title="Hola Ada",
            body="Ofertas en Madrid",
            payload={"token": device.token},
        )
        rows.append(row)
    return rows


def member(group: str) -> User:
    user = UserFactory(username=group.lower())
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)


# -- download ----------------------------------------------------------------------------


def test_the_export_has_every_section_and_is_plain_json() -> None:
    person = ada()
    staff = UserFactory(username="support")
    subscriber_update_preferences(
        subscriber=person, context=ConsentContext(source="admin", actor=staff), frequency_limit="weekly"
    )
    delivered(person)

    data = subscriber_export(subscriber=person)

    assert json.loads(json.dumps(data)) == data  # JSON-serializable as it is, nothing lost
    assert set(data) == {
        "format",
        "subscriber",
        "topic_preferences",
        "devices",
        "consent_records",
        "events",
        "deliveries",
    }
    me = data["subscriber"]
    assert (me["external_id"], me["email"], me["first_name"], me["last_name"], me["city"]) == (
        "user-ada",
        "ada@example.com",
        "Ada",
        "Lovelace",
        "Madrid",
    )
    assert me["attributes"] == {"plan": "pro", "age": 36}
    assert me["interests"] == ["maths", "engines"]
    assert me["behaviour"]["purchase_count"] == 2
    assert Decimal(me["behaviour"]["total_spent"]) == Decimal("19.98")
    assert me["preferences"]["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert me["preferences"]["frequency_limit"] == "weekly"
    # Every active topic with the effective choice: the explicit one, else the default.
    topics = {t["topic"]: t for t in data["topic_preferences"]}
    assert set(topics) == set(Topic.objects.filter(is_active=True).values_list("slug", flat=True))
    assert topics.pop("offers") == {
        "topic": "offers",
        "name": "Offers",
        "opted_in": False,
        "chosen": True,
        "updated_at": any_text(),
    }
    assert [(t["opted_in"], t["chosen"], t["updated_at"]) for t in topics.values()] == [(True, False, None)]
    # The person's own tokens, unmasked: the export goes to them or to staff who already see them.
    assert [d["token"] for d in data["devices"]] == [TOKEN]
    assert data["devices"][0]["platform"] == "ios" and data["devices"][0]["locale"] == "es-ES"
    assert [e["name"] for e in data["events"]] == ["purchase", "level_completed", "purchase"]
    assert data["events"][1]["properties"] == {"level": 1}
    [row] = data["deliveries"]
    assert row["status"] == "sent" and row["language"] == "es" and row["sent_at"]


def test_consent_records_are_all_there_oldest_first_without_the_staff_account() -> None:
    person = ada()
    staff = UserFactory(username="support-agent")
    subscriber_update_preferences(
        subscriber=person, context=ConsentContext(source="admin", actor=staff), push_opt_in=False
    )
    records = subscriber_export(subscriber=person)["consent_records"]
    stored = list(ConsentRecord.objects.filter(subscriber=person).order_by("created_at", "id"))
    assert [(r["field"], r["old_value"], r["new_value"], r["source"]) for r in records] == [
        (r.field, r.old_value, r.new_value, r.source) for r in stored
    ]
    assert records[0]["field"] == "push_opt_in" and records[0]["old_value"] is None  # the first consent
    assert records[-1]["source"] == "admin"
    assert [r["topic"] for r in records if r["field"] == "topic"] == ["offers"]
    assert "support-agent" not in json.dumps(records)
    assert all(len(r["ip_hash"]) in (0, 64) for r in records)


def test_recent_rows_are_limited() -> None:
    person = ada(events=6)
    delivered(person, n=4)
    data = subscriber_export(subscriber=person, recent_deliveries=3, recent_events=5)
    assert len(data["events"]) == 5 and len(data["deliveries"]) == 3
    assert (data["format"]["recent_events"], data["format"]["recent_deliveries"]) == (5, 3)
    newest = [r["scheduled_for"] for r in data["deliveries"]]
    assert newest == sorted(newest, reverse=True)


def test_the_export_takes_the_same_queries_however_much_data_there_is() -> None:
    def queries(person: Subscriber) -> int:
        with CaptureQueriesContext(connection) as captured:
            subscriber_export(subscriber=person)
        return len(captured)

    small = ada("small", events=1, devices=1)
    delivered(small)
    big = ada("big", events=30, devices=5)
    delivered(big, n=10)
    TopicFactory(slug="news")
    assert queries(small) == queries(big) <= 8


def test_core_sections_cannot_be_replaced() -> None:
    with pytest.raises(ValueError, match="audiences app itself"):
        register_export_section("devices", lambda *, subscriber, limit: [])


# -- erase -------------------------------------------------------------------------------


def test_erasing_removes_personal_data_tokens_and_events_and_keeps_a_suppression_record() -> None:
    person = ada()
    [row] = delivered(person)
    segment = segment_create_static(name="VIP", subscribers=[person.pk])
    records_before = ConsentRecord.objects.filter(subscriber=person).count()
    device = Device.objects.get(subscriber=person)

    subscriber_erase(subscriber=person, context=PREFERENCE_CENTER)

    stored = Subscriber.objects.get(pk=person.pk)
    assert person.erased_at is not None and person.external_id == stored.external_id  # refreshed in place
    assert stored.erased_at is not None and stored.push_opt_in is False
    assert stored.external_id == erased_external_id("user-ada")
    assert (stored.email, stored.first_name, stored.last_name, stored.city, stored.country) == ("",) * 5
    assert (stored.attributes, stored.interests, stored.purchase_count, stored.total_spent) == ({}, [], 0, 0)
    assert (stored.quiet_hours_start, stored.last_seen_at, stored.timezone) == (None, None, "UTC")
    # Nothing the person told us is left on the row.
    row_text = json.dumps({f.attname: str(getattr(stored, f.attname)) for f in Subscriber._meta.fields})
    for secret in (
        "user-ada",
        "ada@example.com",
        "Ada",
        "Lovelace",
        "Madrid",
        "pro",
        "maths",
        "Europe/Madrid",
    ):
        assert secret not in row_text

    device.refresh_from_db()
    assert TOKEN not in device.token and device.token == f"erased:{device.pk}"
    assert (device.is_active, device.invalidation_reason) == (False, Device.InvalidationReason.ERASED)
    assert (device.app_version, device.locale) == ("", "")
    assert not Event.objects.filter(subscriber=person).exists()
    assert not TopicPreference.objects.filter(subscriber=person).exists()
    assert not SegmentMember.objects.filter(segment=segment).exists()
    assert not OutboxMessage.objects.exists()
    # The ledger keeps its row (campaign statistics keep their counts), now naming no one.
    assert Delivery.objects.filter(pk=row.pk, status=Delivery.Status.SENT).exists()

    # The consent ledger is kept and gets the opt-out and the final "erased" record.
    new = list(ConsentRecord.objects.filter(subscriber=person).order_by("created_at", "id"))
    assert len(new) == records_before + 2
    assert [(r.field, r.old_value, r.new_value) for r in new[-2:]] == [
        ("push_opt_in", True, False),
        (ERASED_FIELD, None, stored.erased_at.isoformat()),
    ]
    assert new[-1].source == "preference_center" and len(new[-1].ip_hash) == 64


def test_erasing_twice_changes_nothing_the_second_time() -> None:
    person = ada()
    subscriber_erase(subscriber=person, context=API)
    first = Subscriber.objects.get(pk=person.pk)
    records = ConsentRecord.objects.count()
    with CaptureQueriesContext(connection) as captured:
        subscriber_erase(subscriber=person, context=API)
    assert ConsentRecord.objects.count() == records
    again = Subscriber.objects.get(pk=person.pk)
    assert (again.erased_at, again.updated_at, again.external_id) == (
        first.erased_at,
        first.updated_at,
        first.external_id,
    )
    writes = [q["sql"] for q in captured if not q["sql"].lstrip().upper().startswith(("SELECT", "SAVEPOINT"))]
    assert [w for w in writes if not w.upper().startswith("RELEASE")] == []


def test_the_admin_history_stops_naming_the_person(admin_client_logged_in: Client) -> None:
    person = ada()
    url = reverse("admin:audiences_subscriber_change", args=[person.pk])
    admin_client_logged_in.get(reverse("admin:audiences_subscriber_export_data", args=[person.pk]))
    assert LogEntry.objects.get(object_id=str(person.pk)).object_repr == "Ada Lovelace (user-ada)"
    subscriber_erase(subscriber=person, context=API)
    assert "Ada" not in LogEntry.objects.get(object_id=str(person.pk)).object_repr
    assert "Ada" not in admin_client_logged_in.get(url + "history/").content.decode()


def test_erased_subscribers_leave_segments_and_campaign_audiences() -> None:
    topic = TopicFactory(slug="news", default_opt_in=True)
    person = ada("erase-me")
    stays = ada("stays")
    spain = segment_save(name="Spain", rules=SPAIN)
    vip = segment_create_static(name="VIP", subscribers=[person.pk, stays.pk])
    campaign = CampaignFactory(topic=topic)
    campaign.include_segments.set([spain, vip])
    assert segment_estimate(segment=spain).total == 2
    assert set(campaign_audience(campaign=campaign)) == {person, stays}

    subscriber_erase(subscriber=person, context=API)

    assert segment_estimate(segment=spain).total == 1
    assert list(segment_subscribers(segment=vip)) == [stays]
    assert list(campaign_audience(campaign=campaign)) == [stays]
    assert list(campaign_audience(campaign=campaign, reachable=False)) == [stays]


def test_the_erased_external_id_is_recognised_also_after_a_key_rotation(settings: Any) -> None:
    person = ada()
    subscriber_erase(subscriber=person, context=API)
    assert external_id_is_erased(external_id="user-ada")
    assert not external_id_is_erased(external_id="user-bob")
    assert external_ids_erased(external_ids=["user-bob", "user-ada", "user-ada"]) == {"user-ada"}
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-brand-new-secret-key-" * 3, [old_key]
    assert external_id_is_erased(external_id="user-ada")


def test_identifying_an_erased_person_again_is_refused_and_stores_nothing() -> None:
    person = ada()
    subscriber_erase(subscriber=person, context=API)
    count = Subscriber.objects.count()
    with pytest.raises(SubscriberErased, match="erased their data"):
        subscriber_identify(external_id="user-ada", changes={"email": "ada@example.com"}, context=API)
    assert Subscriber.objects.count() == count


def test_an_id_erased_twice_gets_a_unique_marker() -> None:
    """Before identify refuses erased ids, the same id can come back and be erased again."""
    subscriber_erase(subscriber=SubscriberFactory(external_id="twice"), context=API)
    again = SubscriberFactory(external_id="twice")
    subscriber_erase(subscriber=again, context=API)
    assert again.external_id == f"{erased_external_id('twice')}:{again.pk}"
    assert external_id_is_erased(external_id="twice")


# -- admin -------------------------------------------------------------------------------


def test_download_is_a_json_attachment_and_is_logged(admin_client_logged_in: Client) -> None:
    person = ada()
    delivered(person)
    response = admin_client_logged_in.get(reverse("admin:audiences_subscriber_export_data", args=[person.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="subscriber-{person.pk}-data.json"'
    assert "no-store" in response["Cache-Control"]
    data = json.loads(response.content)
    assert data["subscriber"]["email"] == "ada@example.com" and data["deliveries"]
    entry = LogEntry.objects.get(object_id=str(person.pk))
    assert entry.get_change_message() == "Downloaded the subscriber's data (JSON)."


def test_the_change_page_offers_both_actions_and_the_read_only_ledger_newest_first(
    admin_client_logged_in: Client,
) -> None:
    person = ada()
    subscriber_update_preferences(subscriber=person, context=API, frequency_limit="daily")
    page = admin_client_logged_in.get(reverse("admin:audiences_subscriber_change", args=[person.pk]))
    html = page.content.decode()
    assert reverse("admin:audiences_subscriber_export_data", args=[person.pk]) in html
    assert reverse("admin:audiences_subscriber_erase_data", args=[person.pk]) in html
    inline = next(f for f in page.context["inline_admin_formsets"] if f.formset.model is ConsentRecord)
    shown = [form.original for form in inline]
    assert shown == list(ConsentRecord.objects.filter(subscriber=person).order_by("-created_at", "-id"))
    assert shown[0].field == "frequency_limit"
    assert not inline.has_add_permission and not inline.has_change_permission
    assert not inline.has_delete_permission


def test_erase_asks_first_then_erases_and_logs(admin_client_logged_in: Client) -> None:
    person = ada()
    url = reverse("admin:audiences_subscriber_erase_data", args=[person.pk])

    page = admin_client_logged_in.get(url)
    assert page.status_code == 200
    assert "Yes, erase the data" in page.content.decode()
    assert Subscriber.objects.get(pk=person.pk).erased_at is None  # GET changes nothing

    response = admin_client_logged_in.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:audiences_subscriber_change", args=[person.pk])
    stored = Subscriber.objects.get(pk=person.pk)
    assert stored.erased_at is not None
    erased = ConsentRecord.objects.get(subscriber=person, field=ERASED_FIELD)
    assert erased.source == "admin" and erased.actor is not None and erased.actor.username == "boss"
    entry = LogEntry.objects.get(object_id=str(person.pk))
    assert entry.get_change_message() == "Erased the subscriber's personal data."
    assert entry.object_repr == stored.external_id

    # A second POST (double click, back button) is a no-op with a message.
    admin_client_logged_in.post(url, {"post": "yes"})
    assert ConsentRecord.objects.filter(subscriber=person, field=ERASED_FIELD).count() == 1
    assert LogEntry.objects.filter(object_id=str(person.pk)).count() == 1
    assert "already erased" in admin_client_logged_in.get(url).content.decode()


def test_a_viewer_may_download_but_not_erase(client: Client) -> None:
    person = ada()
    client.force_login(member(VIEWER))
    url = reverse("admin:audiences_subscriber_erase_data", args=[person.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Subscriber.objects.get(pk=person.pk).erased_at is None
    download = client.get(reverse("admin:audiences_subscriber_export_data", args=[person.pk]))
    assert download.status_code == 200
    page = client.get(reverse("admin:audiences_subscriber_change", args=[person.pk])).content.decode()
    assert url not in page


def test_a_marketer_may_erase(client: Client) -> None:
    person = ada()
    client.force_login(member(MARKETER))
    response = client.post(
        reverse("admin:audiences_subscriber_erase_data", args=[person.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert Subscriber.objects.get(pk=person.pk).erased_at is not None


def test_the_api_answers_410_when_an_erased_person_is_identified_again(client) -> None:  # type: ignore[no-untyped-def]
    from audiences.services import api_key_create

    person = ada()
    subscriber_erase(subscriber=person, context=API)
    raw = api_key_create(name="app").plaintext
    response = client.post(
        "/api/v1/identify",
        data={"external_id": "user-ada", "email": "ada@example.com"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 410, response.content
    assert "erased their data" in response.json()["detail"]
    assert not Subscriber.objects.filter(external_id="user-ada").exists()


def test_an_import_cannot_bring_an_erased_person_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from audiences.csv_import import ImportOptions
    from audiences.services import audience_import_file

    subscriber_erase(subscriber=ada(), context=API)
    path = tmp_path / "shop.csv"
    path.write_text(
        "external_id,email\nuser-bob,bob@example.com\nuser-ada,ada@example.com\n", encoding="utf-8"
    )
    count = Subscriber.objects.count()
    summary = audience_import_file(path=path, options=ImportOptions(file_name=path.name))
    assert not summary.written
    assert [(e["line"], e["column"]) for e in summary.errors] == [(3, "external_id")]
    assert "erased their data" in summary.errors[0]["message"]
    assert Subscriber.objects.count() == count
