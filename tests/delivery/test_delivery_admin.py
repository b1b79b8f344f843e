"""The delivery admin: runs, the ledger, the device inbox and the test-send page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from delivery import services, tasks
from delivery.models import Delivery, OutboxMessage, Run
from tests.factories import DeviceFactory, SubscriberFactory, TestDeviceFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

# A page's queries must not grow with the rows on it (session, user, count, page, …).
MAX_QUERIES = 10


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.send_test_run, "delay", lambda run_id: None)


def _sent_test_runs(runs: int, devices: int, *, title: str = "Hi {{ subscriber.first_name }}") -> list[Run]:
    """Test runs made and sent through the real services (as a marketer would)."""
    user = UserFactory()
    for index in range(devices):
        subscriber = SubscriberFactory(first_name=f"Tester{index}")
        TestDeviceFactory(user=user, device=DeviceFactory(subscriber=subscriber))
    made = []
    for _ in range(runs):
        variant = VariantFactory(title_en=title)
        run = services.test_send_create(campaign=variant.campaign, user=user)
        services.test_send_run(run_id=run.pk)
        made.append(run)
    return made


def _get(client: Client, name: str, *args: Any, query: str = "") -> str:
    response = client.get(reverse(f"admin:{name}", args=args) + query)
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


@pytest.mark.parametrize(
    ("changelist", "query"),
    [
        ("delivery_run_changelist", ""),
        ("delivery_run_changelist", "?is_test__exact=1&status__exact=completed"),
        ("delivery_delivery_changelist", ""),
        ("delivery_delivery_changelist", "?status__exact=sent&run__is_test__exact=1&reason__icontains="),
        ("delivery_outboxmessage_changelist", ""),
        ("delivery_outboxmessage_changelist", "?is_test__exact=1&q=Hi"),
    ],
)
def test_changelists_take_a_bounded_number_of_queries(  # type: ignore[no-untyped-def]
    admin_client_logged_in: Client, django_assert_max_num_queries, changelist: str, query: str
) -> None:
    _sent_test_runs(runs=2, devices=2)
    with django_assert_max_num_queries(MAX_QUERIES) as few:
        _get(admin_client_logged_in, changelist, query=query)
    _sent_test_runs(runs=6, devices=4)
    with django_assert_max_num_queries(len(few.captured_queries)):  # more rows, no more queries
        _get(admin_client_logged_in, changelist, query=query)


def test_run_list_shows_counts_per_status(admin_client_logged_in: Client) -> None:
    (run,) = _sent_test_runs(runs=1, devices=3)
    Delivery.objects.filter(pk=Delivery.objects.filter(run=run).first().pk).update(  # type: ignore[union-attr]
        status="failed"
    )
    page = _get(admin_client_logged_in, "delivery_run_changelist")
    assert "2 sent" in page and "1 failed" in page
    assert f"run__id__exact={run.pk}&amp;status__exact=sent" in page
    assert "2 sent" in _get(admin_client_logged_in, "delivery_run_change", run.pk)


def test_filtered_by_device_and_run(admin_client_logged_in: Client, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    first, second = _sent_test_runs(runs=2, devices=2)
    device_id = Delivery.objects.filter(run=first).values_list("device_id", flat=True).first()
    with django_assert_max_num_queries(MAX_QUERIES):
        page = _get(
            admin_client_logged_in,
            "delivery_outboxmessage_changelist",
            query=f"?device__id__exact={device_id}",
        )
    assert page.count('href="/admin/delivery/outboxmessage/device/') >= 2
    by_run = _get(
        admin_client_logged_in,
        "delivery_outboxmessage_changelist",
        query=f"?delivery__run__id__exact={second.pk}",
    )
    for message in OutboxMessage.objects.select_related("delivery"):
        assert (message.message_id in by_run) is (message.delivery.run_id == second.pk)  # type: ignore[union-attr]
    _get(admin_client_logged_in, "delivery_delivery_changelist", query=f"?run__id__exact={second.pk}")


@pytest.mark.parametrize(
    ("model_name", "field_name"), [("delivery", "run"), ("delivery", "device"), ("outboxmessage", "device")]
)
def test_relation_filters_search_as_you_type(
    admin_client_logged_in: Client, model_name: str, field_name: str
) -> None:
    _sent_test_runs(runs=1, devices=1)
    response = admin_client_logged_in.get(
        reverse("admin:autocomplete"),
        {"app_label": "delivery", "model_name": model_name, "field_name": field_name, "term": ""},
    )
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_outbox_detail_and_inbox_escape_html(admin_client_logged_in: Client) -> None:
    _sent_test_runs(runs=1, devices=1, title="<script>alert('x')</script> {{ subscriber.first_name }}")
    message = OutboxMessage.objects.get()
    assert message.title.startswith("<script>")  # stored as rendered: push text is not HTML

    detail = _get(admin_client_logged_in, "delivery_outboxmessage_change", message.pk)
    inbox = _get(admin_client_logged_in, "delivery_outboxmessage_device_inbox", message.device_id)
    listing = _get(admin_client_logged_in, "delivery_outboxmessage_changelist")
    for page in (detail, inbox, listing):
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(" in page
    assert 'id="outbox-payload"' in detail and "&quot;analytics_label&quot;" in detail
    assert f'data-message="{message.message_id}"' in inbox


def test_ledger_and_outbox_are_read_only(admin_client_logged_in: Client) -> None:
    (run,) = _sent_test_runs(runs=1, devices=1)
    row = Delivery.objects.get(run=run)
    page = _get(admin_client_logged_in, "delivery_delivery_change", row.pk)
    assert 'name="status"' not in page
    assert admin_client_logged_in.get(reverse("admin:delivery_outboxmessage_add")).status_code == 403
    assert admin_client_logged_in.post(reverse("admin:delivery_run_delete", args=[run.pk])).status_code == 403


def test_test_send_page_sends_to_my_devices(client: Client) -> None:
    user = UserFactory()
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["send_test_campaign", "view_run", "view_outboxmessage"])
    )
    client.force_login(user)
    variant = VariantFactory(name="A")
    other = VariantFactory(campaign=variant.campaign, name="B")
    url = reverse("admin:delivery_run_test_send", args=[variant.campaign_id])

    page = client.get(url).content.decode()
    assert "You have no test devices" in page
    response = client.post(url, {"variant": other.pk, "language": ""}, follow=True)
    assert "You have no test devices: add one under Campaigns" in response.content.decode()
    assert not Run.objects.exists()

    TestDeviceFactory(user=user, label="My Pixel")
    assert "My Pixel" in client.get(url).content.decode()
    response = client.post(url, {"variant": other.pk, "language": "de"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:delivery_run_change", args=[run.pk]
    )
    assert (run.is_test, run.started_by_id) == (True, user.pk)
    assert Delivery.objects.get(run=run).variant_id == other.pk


def test_test_send_page_needs_the_permission(client: Client) -> None:
    client.force_login(UserFactory())
    variant = VariantFactory()
    response = client.get(reverse("admin:delivery_run_test_send", args=[variant.campaign_id]))
    assert response.status_code == 403
