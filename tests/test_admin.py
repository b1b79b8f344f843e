"""The admin shell: every registered model works, the dashboard shows real numbers."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from audiences.models import ConsentRecord, Device, Subscriber
from audiences.selectors import audience_stats
from delivery.services import heartbeat_record
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _url(model: type, view: str) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}")


def test_every_app_model_is_registered_on_unfold() -> None:
    from unfold.admin import ModelAdmin as UnfoldModelAdmin

    labels = {model._meta.label for model, _ in REGISTRY}
    assert {
        "audiences.Subscriber",
        "audiences.Device",
        "audiences.Topic",
        "audiences.ConsentRecord",
        "django_celery_beat.PeriodicTask",
        "django_celery_beat.ClockedSchedule",
        "django_celery_beat.CrontabSchedule",
        "auth.User",
        "auth.Group",
    } <= labels
    plain = [m._meta.label for m, ma in REGISTRY if not isinstance(ma, UnfoldModelAdmin)]
    assert plain == [], f"registered without Unfold's ModelAdmin: {plain}"


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=lambda v: getattr(v, "__name__", ""))
def test_changelist_and_add_pages(  # type: ignore[no-untyped-def]
    admin_client_logged_in: Client, superuser: User, model, model_admin
) -> None:
    call_command("seed_demo", count=20, stdout=io.StringIO())
    response = admin_client_logged_in.get(_url(model, "changelist"))
    assert response.status_code == 200, response.content[:500]

    request = RequestFactory().get("/")
    request.user = superuser
    response = admin_client_logged_in.get(_url(model, "add"))
    if model_admin.has_add_permission(request):
        assert response.status_code == 200, response.content[:500]
    else:  # read-only ledgers (consent records, heartbeats): adding is refused by design
        assert response.status_code == 403


def test_change_pages_render_for_seeded_objects(admin_client_logged_in: Client) -> None:
    call_command("seed_demo", count=20, stdout=io.StringIO())
    for model in (Subscriber, Device, ConsentRecord):
        obj = model.objects.first()
        assert obj is not None
        response = admin_client_logged_in.get(
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
        )
        assert response.status_code == 200


def _kpi(html: str, kpi_id: str) -> str:
    match = re.search(rf'id="{kpi_id}".*?data-kpi-value>([^<]+)<', html, re.S)
    assert match, f"{kpi_id} not on the dashboard"
    return match.group(1).strip()


def test_dashboard_shows_real_counts(admin_client_logged_in: Client) -> None:
    reachable = DeviceFactory(platform="ios").subscriber
    DeviceFactory(subscriber=reachable, platform="web")
    DeviceFactory(subscriber=SubscriberFactory(push_opt_in=False))
    SubscriberFactory(language="de")  # no device
    html = admin_client_logged_in.get(reverse("admin:index")).content.decode()
    assert _kpi(html, "kpi-subscribers") == "3"
    assert _kpi(html, "kpi-devices") == "2"  # the opted-out subscriber's device is not reachable
    assert _kpi(html, "kpi-opt-in") == "66.7%"
    assert "No heartbeat yet" in html

    heartbeat_record(name="beat-worker", hostname="w1")
    html = admin_client_logged_in.get(reverse("admin:index")).content.decode()
    assert "Beat and workers are running." in html


def test_dashboard_query_count_does_not_grow_with_audience(
    admin_client_logged_in: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    call_command("seed_demo", count=200, stdout=io.StringIO())
    with django_assert_max_num_queries(12):
        assert admin_client_logged_in.get(reverse("admin:index")).status_code == 200
    stats = audience_stats()
    assert stats.subscribers == 200


def test_subscriber_changelist_has_no_n_plus_one(
    admin_client_logged_in: Client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    call_command("seed_demo", count=120, stdout=io.StringIO())
    for model in (Subscriber, Device, ConsentRecord):
        with django_assert_max_num_queries(16):
            assert admin_client_logged_in.get(_url(model, "changelist")).status_code == 200


def test_admin_preference_change_goes_to_the_consent_ledger(
    admin_client_logged_in: Client, superuser: User
) -> None:
    sub = SubscriberFactory(push_opt_in=True, language="en")
    url = reverse("admin:audiences_subscriber_change", args=[sub.pk])
    page = admin_client_logged_in.get(url)
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list | dict)}
    data.update(
        {
            "external_id": sub.external_id,
            "language": "de",
            "timezone": "Europe/Berlin",
            "frequency_limit": "daily",
            "interests": "[]",
            "attributes": "{}",
            # push_opt_in unchecked → opted out
            "devices-TOTAL_FORMS": "0",
            "devices-INITIAL_FORMS": "0",
            "topic_preferences-TOTAL_FORMS": "0",
            "topic_preferences-INITIAL_FORMS": "0",
            "consent_records-TOTAL_FORMS": "0",
            "consent_records-INITIAL_FORMS": "0",
        }
    )
    data.pop("push_opt_in", None)
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    sub.refresh_from_db()
    assert (sub.push_opt_in, sub.language, sub.frequency_limit) == (False, "de", "daily")
    records = {r.field: r for r in ConsentRecord.objects.filter(subscriber=sub)}
    assert set(records) == {"push_opt_in", "language", "frequency_limit"}
    assert all(r.source == "admin" and r.actor == superuser for r in records.values())


def test_consent_records_are_read_only_in_admin(admin_client_logged_in: Client) -> None:
    sub = SubscriberFactory()
    record = ConsentRecord.objects.create(subscriber=sub, field="push_opt_in", new_value=True, source="api")
    change = admin_client_logged_in.get(reverse("admin:audiences_consentrecord_change", args=[record.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    delete = admin_client_logged_in.post(reverse("admin:audiences_consentrecord_delete", args=[record.pk]))
    assert delete.status_code == 403
    assert ConsentRecord.objects.filter(pk=record.pk).exists()


def test_topic_admin_has_translation_tabs_with_local_assets(admin_client_logged_in: Client) -> None:
    topic = TopicFactory(slug="offers", name_en="Offers", name_de="Angebote")
    url = reverse("admin:audiences_topic_change", args=[topic.pk])
    html = admin_client_logged_in.get(url).content.decode()
    assert 'name="name_de"' in html and 'name="name_ar"' in html
    assert "/static/vendor/jquery-ui/jquery-ui.min.js" in html
    assert "googleapis" not in html and "cdn" not in html.lower()


def test_non_staff_are_sent_to_login(client: Client) -> None:
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_subscriber_list_leads_to_the_csv_import(admin_client_logged_in: Client) -> None:
    changelist = admin_client_logged_in.get(reverse("admin:audiences_subscriber_changelist"))
    url = reverse("admin:audiences_subscriber_import_csv")
    assert url in changelist.content.decode()
    response = admin_client_logged_in.get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:audiences_importjob_add")


def test_subscriber_list_counts_only_active_devices(admin_client_logged_in: Client) -> None:
    from django.utils import timezone

    sub = SubscriberFactory(external_id="counted")
    DeviceFactory(subscriber=sub)
    DeviceFactory(subscriber=sub, platform="ios")
    Device.objects.create(
        subscriber=sub,
        token="dead-token",
        platform="web",
        is_active=False,
        invalidated_at=timezone.now(),
        invalidation_reason="unregistered",
    )
    SubscriberFactory(external_id="no-devices")
    page = admin_client_logged_in.get(reverse("admin:audiences_subscriber_changelist"))
    rows = {obj.external_id: obj.n_active_devices for obj in page.context["cl"].result_list}
    assert rows == {"counted": 2, "no-devices": 0}
