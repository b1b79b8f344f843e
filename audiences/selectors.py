"""Reads for the audiences app."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q

from audiences.models import Device, Subscriber, Topic, TopicPreference


@dataclass(frozen=True)
class AudienceStats:
    subscribers: int
    opted_in: int
    reachable_subscribers: int
    reachable_devices: int
    devices_by_platform: dict[str, int]
    subscribers_by_language: dict[str, int]

    @property
    def opt_in_rate(self) -> float | None:
        return self.opted_in / self.subscribers if self.subscribers else None


def audience_stats() -> AudienceStats:
    """Headline numbers for the admin dashboard, in four aggregate queries."""
    live = Subscriber.objects.filter(erased_at__isnull=True)
    active_device = Device.objects.filter(subscriber=OuterRef("pk"), is_active=True)
    totals = live.annotate(has_device=Exists(active_device)).aggregate(
        subscribers=Count("pk"),
        opted_in=Count("pk", filter=Q(push_opt_in=True)),
        reachable=Count("pk", filter=Q(push_opt_in=True, has_device=True)),
    )
    reachable_devices = Device.objects.filter(
        is_active=True, subscriber__push_opt_in=True, subscriber__erased_at__isnull=True
    )
    by_platform = dict(reachable_devices.values_list("platform").annotate(n=Count("pk")).order_by("platform"))
    by_language = dict(live.values_list("language").annotate(n=Count("pk")).order_by("-n", "language"))
    return AudienceStats(
        subscribers=totals["subscribers"],
        opted_in=totals["opted_in"],
        reachable_subscribers=totals["reachable"],
        reachable_devices=sum(by_platform.values()),
        devices_by_platform=by_platform,
        subscribers_by_language=by_language,
    )


def subscriber_topic_opt_ins(*, subscriber: Subscriber) -> dict[Topic, bool]:
    """Each active topic with the subscriber's effective choice (explicit or default)."""
    explicit = dict(TopicPreference.objects.filter(subscriber=subscriber).values_list("topic_id", "opted_in"))
    return {
        topic: explicit.get(topic.pk, topic.default_opt_in) for topic in Topic.objects.filter(is_active=True)
    }
