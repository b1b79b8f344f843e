"""Reads of the campaigns app: the audience of a campaign and its language coverage."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from audiences.languages import fallback_chain
from audiences.models import Segment, Subscriber
from audiences.segments.loading import rule_context_load
from audiences.selectors import reachable_q, segment_subscribers
from campaigns.models import Campaign, Variant


def _segment_q(segments: list[Segment]) -> Q:
    """Subscribers in any of ``segments``, as one condition (each segment a subquery)."""
    conditions = []
    for segment in segments:
        context = rule_context_load(segment_id=segment.pk) if segment.kind == Segment.Kind.DYNAMIC else None
        conditions.append(Q(pk__in=segment_subscribers(segment=segment, context=context).values("pk")))
    return reduce(operator.or_, conditions)


def campaign_audience(*, campaign: Campaign, reachable: bool = True) -> QuerySet[Subscriber]:
    """Who a campaign is for, as one lazy query.

    Included segments (any of them; none means everyone), minus the excluded ones,
    and — with ``reachable`` — only subscribers who can get it: opted in to push and
    to the campaign's topic, with an active device. Consent is checked again at send
    time; this is what planning and the estimates use.
    """
    audience = Subscriber.objects.filter(erased_at__isnull=True).order_by()
    include = list(campaign.include_segments.all())
    if include:
        audience = audience.filter(_segment_q(include))
    exclude = list(campaign.exclude_segments.all())
    if exclude:
        audience = audience.exclude(_segment_q(exclude))
    if reachable:
        audience = audience.filter(reachable_q(topic_id=campaign.topic_id))
    return audience


def campaign_audience_size(*, campaign: Campaign) -> int:
    return campaign_audience(campaign=campaign).count()


@dataclass(frozen=True)
class LanguageCoverage:
    language: str  # the subscribers' language
    subscribers: int
    served_in: str  # the language they will get
    complete: bool  # every variant has this language's own title and body

    @property
    def is_fallback(self) -> bool:
        return self.served_in != self.language


def variant_languages(*, variant: Variant) -> set[str]:
    """Languages in which this variant has both its own title and body."""
    found = set()
    for code, _name in settings.LANGUAGES:
        suffix = code.replace("-", "_")
        if (getattr(variant, f"title_{suffix}", "") or "").strip() and (
            getattr(variant, f"body_{suffix}", "") or ""
        ).strip():
            found.add(code)
    return found


def campaign_languages(*, campaign: Campaign) -> set[str]:
    """Languages every variant of the campaign is written in."""
    variants = list(campaign.variants.all())
    if not variants:
        return set()
    return set.intersection(*(variant_languages(variant=v) for v in variants))


def campaign_served_language(*, language: str, available: set[str], default: str) -> str:
    """The language a subscriber gets: along their chain (pt-br → pt → default), or the default."""
    for candidate in fallback_chain(language, default=default):
        if candidate in available:
            return candidate
    return default


def campaign_language_coverage(*, campaign: Campaign) -> list[LanguageCoverage]:
    """How many of the audience get each language, and how many a fallback (one GROUP BY query)."""
    available = campaign_languages(campaign=campaign)
    counts = (
        campaign_audience(campaign=campaign)
        .values("language")
        .annotate(n=Count("pk"))
        .order_by("-n", "language")
    )
    return [
        LanguageCoverage(
            language=row["language"],
            subscribers=row["n"],
            served_in=(
                served := campaign_served_language(
                    language=row["language"], available=available, default=campaign.default_language
                )
            ),
            complete=served in available,
        )
        for row in counts
    ]


def campaign_missing_translations(*, campaign: Campaign) -> list[tuple[Variant, list[str]]]:
    """Per variant, the languages (among those the audience speaks or the default) it lacks."""
    wanted = {campaign.default_language}
    wanted |= set(
        campaign_audience(campaign=campaign).values_list("language", flat=True).distinct().order_by()
    )
    order = [code for code, _name in settings.LANGUAGES]
    result = []
    for variant in campaign.variants.all():
        missing = sorted(wanted - variant_languages(variant=variant), key=order.index)
        if missing:
            result.append((variant, missing))
    return result
