"""What the campaign pages show besides the form: language coverage and the device preview.

Reads only. The preview renders through ``campaigns.messages.campaign_message_for`` —
the function the delivery engine sends with — so the mock-ups show exactly what a
subscriber would get, and say why when they would get nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audiences.languages import is_rtl
from audiences.models import Device, Subscriber
from audiences.selectors import reachable_q
from campaigns.messages import MessagePreview, campaign_message_for, subscriber_context
from campaigns.models import Campaign, Variant
from campaigns.rendering import RenderedMessage
from campaigns.selectors import (
    campaign_audience,
    campaign_language_coverage,
    campaign_missing_translations,
    variant_languages,
)

SAMPLE_SIZE = 8
PLATFORM_NAMES = {"android": "Android", "ios": "iOS", "web": "Web"}


def language_name(code: str) -> str:
    return str(dict(settings.LANGUAGES).get(code, code))


def grouped(value: int) -> str:
    return number_format(value, force_grouping=True)


@dataclass(frozen=True)
class CoverageLine:
    language: str
    name: str
    served_name: str
    subscribers: int
    count: str  # subscribers, grouped ("4,200")
    sentence: str
    is_fallback: bool
    complete: bool


@dataclass(frozen=True)
class LanguageReport:
    lines: list[CoverageLine]
    warnings: list[str]
    audience: int


def language_report(*, campaign: Campaign) -> LanguageReport:
    """Who gets which language (“4,200 subscribers will get English instead of German”),
    and which translations are missing. Two audience queries (one GROUP BY, one DISTINCT)."""
    lines = []
    for row in campaign_language_coverage(campaign=campaign):
        names = {
            "count": grouped(row.subscribers),
            "served": language_name(row.served_in),
            "wanted": language_name(row.language),
        }
        if row.is_fallback:
            sentence = ngettext(
                "%(count)s subscriber will get %(served)s instead of %(wanted)s",
                "%(count)s subscribers will get %(served)s instead of %(wanted)s",
                row.subscribers,
            )
        else:
            sentence = ngettext(
                "%(count)s subscriber will get %(served)s",
                "%(count)s subscribers will get %(served)s",
                row.subscribers,
            )
        lines.append(
            CoverageLine(
                language=row.language,
                name=names["wanted"],
                served_name=names["served"],
                subscribers=row.subscribers,
                count=names["count"],
                sentence=sentence % names,
                is_fallback=row.is_fallback,
                complete=row.complete,
            )
        )
    warnings = []
    for variant, missing in campaign_missing_translations(campaign=campaign):
        if campaign.default_language in missing:
            warnings.append(
                _(
                    "Variant %(variant)s has no text in the campaign's default language (%(language)s); "
                    "write it before launching."
                )
                % {"variant": variant.name, "language": language_name(campaign.default_language)}
            )
        others = [language_name(code) for code in missing if code != campaign.default_language]
        if others:
            warnings.append(
                _(
                    "Variant %(variant)s has no %(languages)s translation: subscribers who speak it get "
                    "%(default)s instead."
                )
                % {
                    "variant": variant.name,
                    "languages": ", ".join(others),
                    "default": language_name(campaign.default_language),
                }
            )
    return LanguageReport(lines=lines, warnings=warnings, audience=sum(line.subscribers for line in lines))


def subscriber_unreachable_reason(*, campaign: Campaign, subscriber: Subscriber) -> str:
    """Why this campaign would send this subscriber nothing, or "" when it would reach them.

    The same conditions planning applies (``campaign_audience``); quiet hours and
    frequency caps are checked at send time and are not predicted here.
    """
    if subscriber.erased_at is not None:
        return _("this subscriber has been erased.")
    if not subscriber.push_opt_in:
        return _("they have opted out of push notifications.")
    paused_until = getattr(subscriber, "paused_until", None)
    if paused_until is not None and paused_until > timezone.now():
        return _("they have paused notifications until %(when)s.") % {
            "when": date_format(timezone.localtime(paused_until), "DATETIME_FORMAT")
        }
    if not Device.objects.filter(subscriber=subscriber, is_active=True).exists():
        return _("they have no active device.")
    if (
        not Subscriber.objects.filter(pk=subscriber.pk)
        .filter(reachable_q(topic_id=campaign.topic_id))
        .exists()
    ):
        return _("they have opted out of the topic “%(topic)s”.") % {"topic": campaign.topic}
    if not campaign_audience(campaign=campaign, reachable=False).filter(pk=subscriber.pk).exists():
        return _("they are not in this campaign's audience (its included and excluded segments).")
    return ""


@dataclass
class Preview:
    """Everything the preview page shows for one variant, language and subscriber."""

    campaign: Campaign
    variants: list[Variant]
    variant: Variant | None
    language: str  # the language asked for (tab)
    subscriber: Subscriber | None
    picked: bool  # the marketer typed an external id (else: a sample or nobody)
    sample: list[Subscriber]
    lookup_error: str = ""
    result: MessagePreview | None = None
    nothing_reason: str = ""
    unreachable: bool = False
    devices: list[str] = field(default_factory=list)

    @property
    def message(self) -> RenderedMessage | None:
        return self.result.message if self.result else None

    @property
    def subscriber_name(self) -> str:
        return display_name(self.subscriber) if self.subscriber is not None else ""

    @property
    def language_name(self) -> str:
        return language_name(self.language)

    @property
    def served_language_name(self) -> str:
        return language_name(self.served_language)

    @property
    def web_origin(self) -> str:
        """What Chrome shows as the sender: the host of a web click URL, else a placeholder."""
        url = self.message.click_url if self.message else ""
        host = urlsplit(url).hostname if url.startswith(("https://", "http://")) else None
        return host or str(_("your website"))

    @property
    def served_language(self) -> str:
        return self.result.language if self.result else self.language

    @property
    def is_rtl(self) -> bool:
        return is_rtl(self.served_language)

    @property
    def direction(self) -> str:
        return "rtl" if self.is_rtl else "ltr"

    @property
    def fallback_note(self) -> str:
        if self.result is None or not self.result.is_fallback:
            return ""
        names = {
            "wanted": language_name(self.result.wanted_language),
            "served": language_name(self.result.language),
        }
        if self.picked and self.subscriber is not None:
            return _(
                "%(name)s speaks %(wanted)s; this variant has no %(wanted)s text, so they get %(served)s "
                "(fallback)."
            ) % {**names, "name": display_name(self.subscriber)}
        return (
            _(
                "This variant has no %(wanted)s text: subscribers who speak %(wanted)s get %(served)s "
                "(fallback)."
            )
            % names
        )

    def languages(self) -> list[dict[str, Any]]:
        written = variant_languages(variant=self.variant) if self.variant else set()
        own = self.subscriber.language if self.subscriber is not None and self.picked else ""
        return [
            {
                "code": code,
                "name": name,
                "selected": code == self.language,
                "written": code in written,
                "rtl": is_rtl(code),
                "own": code == own,
            }
            for code, name in settings.LANGUAGES
        ]


def display_name(subscriber: Subscriber) -> str:
    full = f"{subscriber.first_name} {subscriber.last_name}".strip()
    return f"{full} ({subscriber.external_id})" if full else subscriber.external_id


def preview_build(
    *, campaign: Campaign, variant_id: str | None, language: str | None, external_id: str | None
) -> Preview:
    variants = list(campaign.variants.all())
    variant = next((v for v in variants if str(v.pk) == variant_id), variants[0] if variants else None)
    sample = list(campaign_audience(campaign=campaign).order_by("pk")[:SAMPLE_SIZE])
    codes = {code for code, _name in settings.LANGUAGES}
    external_id = (external_id or "").strip()
    subscriber, picked, lookup_error = None, False, ""
    if external_id:
        subscriber = Subscriber.objects.filter(external_id=external_id).first()
        picked = subscriber is not None
        if subscriber is None:
            lookup_error = _("No subscriber has the external id “%(id)s”.") % {"id": external_id}
    if subscriber is None and sample:
        subscriber = sample[0]
    if language not in codes:
        language = subscriber.language if picked and subscriber is not None else campaign.default_language
    preview = Preview(
        campaign=campaign,
        variants=variants,
        variant=variant,
        language=language or campaign.default_language,
        subscriber=subscriber,
        picked=picked,
        sample=sample,
        lookup_error=lookup_error,
    )
    if variant is None:
        return preview
    if subscriber is None:
        # Nobody in the audience yet: render for a blank subscriber, every variable at its default.
        blank = Subscriber(external_id="", language=preview.language)
        preview.result = campaign_message_for(
            campaign=campaign,
            variant=variant,
            subscriber=blank,
            language=preview.language,
            context=subscriber_context(subscriber=blank, latest_events={}),
        )
    else:
        preview.result = campaign_message_for(
            campaign=campaign, variant=variant, subscriber=subscriber, language=preview.language
        )
        reason = subscriber_unreachable_reason(campaign=campaign, subscriber=subscriber)
        if reason:
            preview.unreachable = True
            preview.nothing_reason = reason
        preview.devices = sorted(
            {
                PLATFORM_NAMES.get(p, p)
                for p in Device.objects.filter(subscriber=subscriber, is_active=True).values_list(
                    "platform", flat=True
                )
            }
        )
    if not preview.nothing_reason and (
        preview.result.reason == "render_empty" or preview.result.message is None
    ):
        preview.nothing_reason = _(
            "the message renders empty in %(language)s (no text, or every variable blank without a default)."
        ) % {"language": language_name(preview.result.language)}
    return preview
