"""Database constraints: bad data is refused by the database itself, not only by forms."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audiences.models import ConsentRecord, Device, Subscriber, TopicPreference
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db


def refused(**create_kwargs: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscriber.objects.create(**create_kwargs)  # type: ignore[arg-type]


def test_external_id_unique_and_not_empty() -> None:
    SubscriberFactory(external_id="abc")
    refused(external_id="abc")
    refused(external_id="")


def test_language_must_be_supported() -> None:
    refused(external_id="x1", language="xx")
    assert Subscriber.objects.create(external_id="x2", language="pt-br").language == "pt-br"


def test_frequency_limit_must_be_a_choice() -> None:
    refused(external_id="x3", frequency_limit="hourly")


def test_quiet_hours_need_both_ends() -> None:
    import datetime as dt

    refused(external_id="x4", quiet_hours_start=dt.time(22))
    sub = Subscriber(external_id="x5", quiet_hours_start=dt.time(22))
    with pytest.raises(ValidationError) as exc:
        sub.full_clean()
    assert "quiet_hours_end" in exc.value.message_dict


def test_model_validation_names_timezone_and_country() -> None:
    sub = Subscriber(external_id="x6", timezone="Mars/Olympus", country="Germany")
    with pytest.raises(ValidationError) as exc:
        sub.full_clean()
    assert "IANA" in exc.value.message_dict["timezone"][0]
    assert "ISO 3166-1" in exc.value.message_dict["country"][0]


def test_device_token_unique_and_platform_valid() -> None:
    device = DeviceFactory(token="tok-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(subscriber=device.subscriber, token="tok-1", platform="ios")
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(subscriber=device.subscriber, token="tok-2", platform="blackberry")


def test_inactive_device_must_say_why_and_when() -> None:
    sub = SubscriberFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(subscriber=sub, token="t3", platform="web", is_active=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(
            subscriber=sub, token="t4", platform="web", is_active=True, invalidated_at=timezone.now()
        )
    ok = Device.objects.create(
        subscriber=sub,
        token="t5",
        platform="web",
        is_active=False,
        invalidated_at=timezone.now(),
        invalidation_reason=Device.InvalidationReason.UNREGISTERED,
    )
    assert not ok.is_active


def test_topic_preference_is_unique_per_subscriber_and_topic() -> None:
    sub, topic = SubscriberFactory(), TopicFactory()
    TopicPreference.objects.create(subscriber=sub, topic=topic, opted_in=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        TopicPreference.objects.create(subscriber=sub, topic=topic, opted_in=True)


def test_consent_records_are_append_only() -> None:
    sub = SubscriberFactory()
    record = ConsentRecord.objects.create(
        subscriber=sub, field="push_opt_in", old_value=True, new_value=False, source="api"
    )
    record.new_value = True
    with pytest.raises(TypeError, match="append-only"):
        record.save()
    with pytest.raises(TypeError, match="append-only"):
        record.delete()
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.filter(pk=record.pk).update(new_value=True)
    with pytest.raises(TypeError, match="append-only"):
        ConsentRecord.objects.all().delete()
    record.refresh_from_db()
    assert record.new_value is False


def test_consent_record_source_and_topic_consistency() -> None:
    sub, topic = SubscriberFactory(), TopicFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ConsentRecord.objects.create(subscriber=sub, field="push_opt_in", new_value=False, source="rumour")
    with pytest.raises(IntegrityError), transaction.atomic():
        ConsentRecord.objects.create(subscriber=sub, field="topic", new_value=False, source="api")
    with pytest.raises(IntegrityError), transaction.atomic():
        ConsentRecord.objects.create(
            subscriber=sub, field="language", topic=topic, new_value="de", source="api"
        )


def test_subscriber_with_consent_history_cannot_be_deleted_silently() -> None:
    from django.db.models import ProtectedError

    sub = SubscriberFactory()
    ConsentRecord.objects.create(subscriber=sub, field="push_opt_in", new_value=True, source="api")
    with pytest.raises(ProtectedError):
        sub.delete()


def test_topic_name_is_translated() -> None:
    from django.utils import translation

    topic = TopicFactory(slug="offers", name_en="Offers", name_de="Angebote")
    topic.refresh_from_db()
    with translation.override("de"):
        assert topic.name == "Angebote"
    with translation.override("fr"):  # no French name: falls back to English
        assert topic.name == "Offers"


def test_reachable_subscribers() -> None:
    reachable = DeviceFactory().subscriber
    DeviceFactory(subscriber=reachable)  # two devices, still one subscriber
    opted_out = DeviceFactory(subscriber=SubscriberFactory(push_opt_in=False)).subscriber
    SubscriberFactory()  # no device
    dead = SubscriberFactory()
    Device.objects.create(
        subscriber=dead,
        token="dead",
        platform="ios",
        is_active=False,
        invalidated_at=timezone.now(),
        invalidation_reason="unregistered",
    )
    assert list(Subscriber.objects.reachable()) == [reachable]
    assert opted_out not in Subscriber.objects.reachable()
