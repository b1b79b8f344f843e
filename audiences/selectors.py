"""Reads for the audiences app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from audiences.models import Device, Segment, SegmentMember, Subscriber, Topic, TopicPreference
from audiences.segments import RuleContext, compile_rules
from audiences.segments.compiler import topic_opt_in_q
from audiences.segments.loading import rule_context_load


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


# -- segments -------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentEstimate:
    total: int
    reachable: int
    sample: list[Subscriber]


def segment_subscribers(
    *,
    segment: Segment | None = None,
    rules: Mapping[str, Any] | None = None,
    context: RuleContext | None = None,
    now: dt.datetime | None = None,
) -> QuerySet[Subscriber]:
    """The (not erased) subscribers in a segment, or matching unsaved ``rules``, as one lazy query.

    Loading the rule context reads attributes, topics and segments (three small
    queries, skipped when ``context`` is given); evaluating the queryset is one SQL
    query. Raises ``SegmentRulesError`` for rules that do not validate.
    """
    live = Subscriber.objects.filter(erased_at__isnull=True).order_by()
    if segment is not None and segment.kind == Segment.Kind.STATIC:
        return live.filter(Exists(SegmentMember.objects.filter(segment=segment, subscriber=OuterRef("pk"))))
    if rules is None:
        rules = segment.rules if segment is not None else {}
    if context is None:
        context = rule_context_load(segment_id=segment.pk if segment is not None else None)
    return live.filter(compile_rules(rules, context=context, now=now))


def reachable_q(*, topic_id: int | None = None) -> Q:
    """Opted in to push, an active device, and opted in to the topic if one is given."""
    q = Q(push_opt_in=True, erased_at__isnull=True) & Q(
        Exists(Device.objects.filter(subscriber=OuterRef("pk"), is_active=True))
    )
    return q & topic_opt_in_q(topic_id) if topic_id is not None else q


def segment_estimate(
    *,
    segment: Segment | None = None,
    rules: Mapping[str, Any] | None = None,
    topic_id: int | None = None,
    sample_size: int = 10,
    context: RuleContext | None = None,
) -> SegmentEstimate:
    """Exact size and reachable size in one aggregate query, plus a sample (one more query)."""
    matching = segment_subscribers(segment=segment, rules=rules, context=context)
    totals = matching.aggregate(
        total=Count("pk"), reachable=Count("pk", filter=reachable_q(topic_id=topic_id))
    )
    sample = list(matching.order_by("-id")[:sample_size]) if sample_size and totals["total"] else []
    return SegmentEstimate(total=totals["total"], reachable=totals["reachable"], sample=sample)


def segment_member_external_ids(*, segment: Segment, limit: int = 50) -> list[str]:
    """The first external ids of a static segment's members, for the admin."""
    return list(
        Subscriber.objects.filter(
            Exists(SegmentMember.objects.filter(segment=segment, subscriber=OuterRef("pk")))
        )
        .order_by("external_id")
        .values_list("external_id", flat=True)[:limit]
    )


def subscribers_unknown_external_ids(*, external_ids: list[str]) -> list[str]:
    """Which of these external ids match no subscriber (chunked ``IN`` lookups)."""
    known: set[str] = set()
    for start in range(0, len(external_ids), 5000):
        chunk = external_ids[start : start + 5000]
        known.update(Subscriber.objects.filter(external_id__in=chunk).values_list("external_id", flat=True))
    return [value for value in external_ids if value not in known]
