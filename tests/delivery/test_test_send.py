"""Test sends: a variant to the staff member's own test devices, through the push backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from django.utils import timezone

from delivery import services, tasks
from delivery.backends import PushMessage, SendResult
from delivery.models import Delivery, OutboxMessage, Run
from delivery.services import TestSendError
from tests.factories import (
    CampaignFactory,
    DeviceFactory,
    SubscriberFactory,
    TestDeviceFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run ids handed to ``send_test_run.delay`` (no broker in unit tests)."""
    calls: list[int] = []
    monkeypatch.setattr(tasks.send_test_run, "delay", calls.append)
    return calls


def _test_device(user: Any, first_name: str, **device: Any) -> Any:
    subscriber = SubscriberFactory(first_name=first_name)
    return TestDeviceFactory(user=user, device=DeviceFactory(subscriber=subscriber, **device))


def test_no_test_devices_is_a_clear_error(enqueued: list[int]) -> None:
    variant = VariantFactory()
    user = UserFactory()
    _test_device(UserFactory(), "Someone else")  # another user's device does not count
    _test_device(  # nor does an inactive one
        user, "Gone", is_active=False, invalidated_at=timezone.now(), invalidation_reason="unregistered"
    )
    with pytest.raises(TestSendError, match="You have no test devices: add one under Campaigns"):
        services.test_send_create(campaign=variant.campaign, user=user)
    assert not Run.objects.exists() and not Delivery.objects.exists()
    assert enqueued == []


def test_test_send_end_to_end(django_capture_on_commit_callbacks, enqueued: list[int]) -> None:  # type: ignore[no-untyped-def]
    variant = VariantFactory(title_en="Hi {{ subscriber.first_name|default:'there' }}")
    VariantFactory(campaign=variant.campaign, name="Z")  # not the first variant
    user = UserFactory()
    ada = _test_device(user, "Ada", platform="android")
    grace = _test_device(user, "Grace", platform="web")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.test_send_create(campaign=variant.campaign, user=user)
        assert enqueued == []  # nothing is enqueued before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    assert enqueued == [run.pk]

    run.refresh_from_db()
    assert (run.is_test, run.status, run.started_by_id, run.audience_size) == (True, "sending", user.pk, 2)
    rows = list(Delivery.objects.filter(run=run).order_by("device_id"))
    assert [(r.device_id, r.variant_id, r.status) for r in rows] == [
        (ada.device_id, variant.pk, "queued"),
        (grace.device_id, variant.pk, "queued"),
    ]

    assert tasks.send_test_run(run.pk) == "completed"  # the task body, synchronously

    inbox = {m.device_id: m for m in OutboxMessage.objects.all()}
    assert inbox[ada.device_id].title == "Hi Ada"
    assert inbox[grace.device_id].title == "Hi Grace"
    assert all(m.is_test for m in inbox.values())
    assert inbox[grace.device_id].payload["message"]["fcm_options"] == {
        "analytics_label": f"campaign-{variant.campaign_id}-test"
    }
    for row in Delivery.objects.filter(run=run):
        assert row.status == Delivery.Status.SENT
        assert row.provider_message_id == inbox[row.device_id].message_id
        assert inbox[row.device_id].delivery_id == row.pk
        assert row.sent_at is not None and row.language == "en" and row.attempts == 1
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.finished_at is not None and run.is_test


def test_running_the_task_twice_sends_nothing_twice(enqueued: list[int]) -> None:
    variant = VariantFactory()
    user = UserFactory()
    _test_device(user, "Ada")
    run = services.test_send_create(campaign=variant.campaign, user=user)

    tasks.send_test_run(run.pk)
    tasks.send_test_run(run.pk)  # a redelivered task

    assert OutboxMessage.objects.count() == 1
    row = Delivery.objects.get(run=run)
    assert (row.status, row.attempts) == ("sent", 1)


def test_empty_render_is_suppressed(enqueued: list[int]) -> None:
    variant = VariantFactory(title_en="{{ subscriber.first_name }}")
    user = UserFactory()
    named = _test_device(user, "Ada")
    nameless = _test_device(user, "")
    run = services.test_send_create(campaign=variant.campaign, user=user)

    tasks.send_test_run(run.pk)

    rows = {row.device_id: row for row in Delivery.objects.filter(run=run)}
    assert (rows[nameless.device_id].status, rows[nameless.device_id].reason) == (
        "suppressed",
        "render_empty",
    )
    assert rows[named.device_id].status == "sent"
    assert list(OutboxMessage.objects.values_list("device_id", flat=True)) == [named.device_id]
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED


def test_chosen_variant_and_language(enqueued: list[int]) -> None:
    first = VariantFactory(name="A")
    second = VariantFactory(
        campaign=first.campaign, name="B", title_de="Hallo {{ subscriber.first_name }}", body_de="Angebote"
    )
    user = UserFactory()
    _test_device(user, "Ada")
    run = services.test_send_create(campaign=first.campaign, user=user, variant=second, language="de")

    tasks.send_test_run(run.pk)

    row = Delivery.objects.get(run=run)
    assert (row.variant_id, row.language, row.status) == (second.pk, "de", "sent")
    assert OutboxMessage.objects.get().title == "Hallo Ada"


def test_refuses_a_variant_of_another_campaign_and_unknown_language(enqueued: list[int]) -> None:
    variant = VariantFactory()
    user = UserFactory()
    _test_device(user, "Ada")
    with pytest.raises(TestSendError, match="belongs to another campaign"):
        services.test_send_create(campaign=CampaignFactory(), user=user, variant=variant)
    with pytest.raises(TestSendError, match="not a language"):
        services.test_send_create(campaign=variant.campaign, user=user, language="xx")
    with pytest.raises(TestSendError, match="no variants"):
        services.test_send_create(campaign=CampaignFactory(), user=user)
    assert not Run.objects.exists()


def test_unusable_backend_refused_before_anything_is_written(settings, enqueued: list[int]) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_PUSH_BACKEND = "carrier-pigeon"
    variant = VariantFactory()
    user = UserFactory()
    _test_device(user, "Ada")
    with pytest.raises(TestSendError, match="not a push backend"):
        services.test_send_create(campaign=variant.campaign, user=user)
    assert not Run.objects.exists()


class RejectingBackend:
    """Answers the first message UNREGISTERED and the others UNAVAILABLE."""

    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        results = [SendResult(ok=False, error_code="UNREGISTERED", error="gone", token_invalid=True)]
        results += [
            SendResult(ok=False, error_code="UNAVAILABLE", error="try later", retry_after=30.0)
            for _ in messages[1:]
        ]
        return results


def test_provider_failures_are_recorded(monkeypatch: pytest.MonkeyPatch, enqueued: list[int]) -> None:
    variant = VariantFactory()
    user = UserFactory()
    first = _test_device(user, "Ada")
    second = _test_device(user, "Grace")
    run = services.test_send_create(campaign=variant.campaign, user=user)
    monkeypatch.setattr(services, "get_backend", RejectingBackend)

    assert tasks.send_test_run(run.pk) == "partially_failed"

    rows = {row.device_id: row for row in Delivery.objects.filter(run=run)}
    assert (rows[first.device_id].status, rows[first.device_id].reason) == ("invalid_token", "unregistered")
    assert (rows[second.device_id].status, rows[second.device_id].error) == ("failed", "try later")
    run.refresh_from_db()
    assert run.finished_at is not None


def test_stale_claim_of_a_killed_worker_is_taken_over(enqueued: list[int]) -> None:
    variant = VariantFactory()
    user = UserFactory()
    _test_device(user, "Ada")
    run = services.test_send_create(campaign=variant.campaign, user=user)
    fresh = timezone.now()
    Delivery.objects.filter(run=run).update(status="sending", claimed_at=fresh, attempts=1)
    services.test_send_run(run_id=run.pk)  # someone else is sending: leave it
    assert not OutboxMessage.objects.exists()

    later = fresh + services.STALE_CLAIM + dt.timedelta(seconds=1)
    services.test_send_run(run_id=run.pk, now=later)
    assert Delivery.objects.get(run=run).status == "sent"
    assert OutboxMessage.objects.count() == 1


def test_unknown_or_real_run_is_ignored(enqueued: list[int]) -> None:
    real = Run.objects.create(campaign=CampaignFactory(), occurrence=timezone.now())
    assert tasks.send_test_run(real.pk) is None
    assert tasks.send_test_run(987654) is None
