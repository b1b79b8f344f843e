"""factory_boy factories for the audiences app."""

from __future__ import annotations

import factory

from audiences.models import Device, Subscriber, Topic


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
