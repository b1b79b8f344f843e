"""factory_boy factories for the audiences and campaigns apps."""

from __future__ import annotations

import factory

from audiences.models import Device, Subscriber, Topic
from campaigns.models import Campaign, TestDevice, Variant


class TopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Topic
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"topic-{n}")
    name = factory.Sequence(lambda n: f"Topic {n}")
    name_en = factory.SelfAttribute("name")
    default_opt_in = True


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    external_id = factory.Sequence(lambda n: f"user-{n:05d}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    first_name = "Ada"
    last_name = "Lovelace"
    language = "en"
    timezone = "Europe/Berlin"
    country = "DE"
    city = "Berlin"


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    subscriber = factory.SubFactory(SubscriberFactory)
    token = factory.Sequence(lambda n: f"fcm-token-{n:08d}")
    platform = Device.Platform.ANDROID


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    topic = factory.SubFactory(TopicFactory)
    kind = Campaign.Kind.ONE_OFF
    schedule_type = Campaign.ScheduleType.NOW


class VariantFactory(factory.django.DjangoModelFactory):
    """A variant written in English (``title_en``/``body_en``); add other languages as kwargs."""

    class Meta:
        model = Variant

    campaign = factory.SubFactory(CampaignFactory)
    name = factory.Sequence(lambda n: "ABCDEFGHIJ"[n % 10] + (str(n // 10) if n >= 10 else ""))
    title_en = "Hi {{ subscriber.first_name|default:'there' }}"
    body_en = "New offers in {{ subscriber.city|default:'your city' }}."


class TestDeviceFactory(factory.django.DjangoModelFactory):
    __test__ = False  # not a pytest test class

    class Meta:
        model = TestDevice

    user = factory.SubFactory("tests.factories.UserFactory")
    device = factory.SubFactory(DeviceFactory)
    label = "My phone"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "auth.User"
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    is_staff = True
    password = factory.django.Password("pw-12345-secret")
