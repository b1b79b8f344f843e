"""Demo campaigns for ``seed_demo``: one of each kind, in the states a workspace has.

Built through the real actions (``campaign_launch``, ``run_start``…), so they carry
their beat tasks and status history like any campaign. Keyed by name: a campaign
that exists (maybe edited, archived or deleted-and-recreated by hand) is left alone.
Times are relative to now, so a fresh demo always has something coming up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from audiences.models import Segment, Topic
from campaigns.models import Campaign, Variant
from campaigns.services import (
    CampaignStateError,
    campaign_complete,
    campaign_launch,
    campaign_submit_for_review,
)
from delivery.models import Run
from delivery.services import run_start

Texts = dict[str, tuple[str, str]]  # language → (title, body)

HELLO = "{{ subscriber.first_name|default:'there' }}"
HOLA = "{{ subscriber.first_name|default:'' }}"


def _next_saturday(now: dt.datetime) -> dt.datetime:
    """Saturday 10:00 UTC, at least a day ahead."""
    day = (now + dt.timedelta(days=1)).date()
    day += dt.timedelta(days=(5 - day.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC)


def _variant(campaign: Campaign, name: str, texts: Texts, **fields: Any) -> Variant:
    translated: dict[str, str] = {}
    for language, (title, body) in texts.items():
        suffix = language.replace("-", "_")
        translated[f"title_{suffix}"], translated[f"body_{suffix}"] = title, body
    return Variant.objects.create(campaign=campaign, name=name, **translated, **fields)


def _launch_or_review(campaign: Campaign) -> Campaign:
    """Launch; a demo bigger than the approval threshold waits for an Approver instead."""
    try:
        return campaign_launch(campaign=campaign, actor=None)
    except CampaignStateError:
        return campaign_submit_for_review(campaign=campaign, actor=None)


def _flash_sale(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Weekend flash sale",
        description="One-off at a fixed time: Saturday morning, UTC.",
        topic=topics["offers"],
        kind=Campaign.Kind.ONE_OFF,
        schedule_type=Campaign.ScheduleType.AT,
        send_at=_next_saturday(now),
        priority=Campaign.Priority.HIGH,
        ttl_seconds=6 * 3600,
        conversion_event="purchase",
    )
    _variant(
        campaign,
        "A",
        {
            "en": (
                f"{HELLO}, 24 hours of deals",
                "Up to 50% off in {{ subscriber.city|default:'your city' }}.",
            ),
            "es": ("24 horas de ofertas", f"Hasta un 50 % de descuento, {HOLA}."),
            "de": ("24 Stunden Angebote", "Bis zu 50 % Rabatt, nur an diesem Wochenende."),
            "fr": ("24 heures de promos", "Jusqu'à 50 % de réduction ce week-end."),
        },
        click_action=Variant.ClickAction.DEEP_LINK,
        click_url="shop://sale/weekend",
    )
    return _launch_or_review(campaign)


def _local_morning(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Good morning in your time zone",
        description="At 09:00 local time for each subscriber, the day after tomorrow.",
        topic=topics["reminders"],
        kind=Campaign.Kind.ONE_OFF,
        schedule_type=Campaign.ScheduleType.LOCAL_TIME,
        local_date=(now + dt.timedelta(days=2)).date(),
        local_time=dt.time(9),
        late_policy=Campaign.LatePolicy.NEXT_DAY,
        fallback_timezone="Europe/London",
    )
    _variant(
        campaign,
        "A",
        {
            "en": (f"Good morning, {HELLO}", "Your saved items are waiting for you."),
            "es": ("Buenos días", "Tus artículos guardados te esperan."),
            "de": ("Guten Morgen", "Ihre gemerkten Artikel warten auf Sie."),
            "pt": ("Bom dia", "Os seus artigos guardados estão à sua espera."),
        },
    )
    return _launch_or_review(campaign)


def _weekly_digest(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Weekly digest",
        description="Recurring: Mondays at 18:00 Berlin time, for three months.",
        topic=topics["news"],
        kind=Campaign.Kind.RECURRING,
        schedule_type=Campaign.ScheduleType.WEEKLY,
        weekdays="1",
        local_time=dt.time(18),
        schedule_timezone="Europe/Berlin",
        ends_at=now + dt.timedelta(days=90),
    )
    _variant(
        campaign,
        "A",
        {
            "en": ("This week at a glance", "Five stories we think you will like."),
            "de": ("Die Woche im Überblick", "Fünf Geschichten, die Ihnen gefallen könnten."),
            "fr": ("La semaine en bref", "Cinq articles qui devraient vous plaire."),
        },
    )
    return _launch_or_review(campaign)


def _cart_reminder(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Abandoned cart reminder",
        description="Triggered by add_to_cart without a purchase (trigger settings come with triggers).",
        topic=topics["reminders"],
        kind=Campaign.Kind.TRIGGERED,
        schedule_type=Campaign.ScheduleType.NOW,
        conversion_event="purchase",
        conversion_window_hours=48,
    )
    if "Cart abandoners this week" in segments:
        campaign.include_segments.set([segments["Cart abandoners this week"]])
    _variant(
        campaign,
        "A",
        {
            "en": (
                f"{HELLO}, you left something behind",
                "Your cart is saved: finish your order in one tap.",
            ),
            "es": ("Te dejaste algo", "Tu carrito está guardado: termina tu pedido con un toque."),
        },
        click_action=Variant.ClickAction.DEEP_LINK,
        click_url="shop://cart",
    )
    return campaign  # a draft


def _ab_test(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Spring collection A/B test",
        description="Two headlines tested on 20% of the audience; the winner goes to the rest.",
        topic=topics["offers"],
        kind=Campaign.Kind.ONE_OFF,
        schedule_type=Campaign.ScheduleType.AT,
        send_at=_next_saturday(now) + dt.timedelta(days=7),
        ab_mode=Campaign.AbMode.TEST_THEN_WINNER,
        ab_test_percent=20,
        ab_window_hours=4,
        ab_metric=Campaign.AbMetric.CLICK,
        control_percent=10,
        conversion_event="purchase",
    )
    _variant(
        campaign,
        "A",
        {
            "en": ("The spring collection is here", "Fresh colours, light fabrics. Have a look."),
            "es": (
                "Llega la colección de primavera",
                "Colores frescos y tejidos ligeros. Échale un vistazo.",
            ),
            "de": ("Die Frühjahrskollektion ist da", "Frische Farben, leichte Stoffe. Schauen Sie rein."),
        },
    )
    _variant(
        campaign,
        "B",
        {
            "en": (f"{HELLO}, spring picks for you", "New in: 120 pieces chosen for the season."),
            "es": (f"{HOLA}, novedades de primavera", "120 prendas nuevas elegidas para la temporada."),
            "de": ("Frühling: unsere Auswahl für Sie", "Neu: 120 Teile für die Saison."),
        },
    )
    # Waits for an Approver in the review queue.
    return campaign_submit_for_review(campaign=campaign, actor=None)


def _sent(topics: dict[str, Topic], segments: dict[str, Segment], now: dt.datetime) -> Campaign:
    campaign = Campaign.objects.create(
        name="Welcome to the new app",
        description="Sent at once, some time ago: completed.",
        topic=topics["news"],
        kind=Campaign.Kind.ONE_OFF,
        schedule_type=Campaign.ScheduleType.NOW,
    )
    _variant(
        campaign,
        "A",
        {
            "en": ("Our new app is here", "Faster, simpler, and it remembers your favourites."),
            "es": ("Ya está aquí nuestra nueva app", "Más rápida, más sencilla y recuerda tus favoritos."),
            "de": ("Unsere neue App ist da", "Schneller, einfacher, und sie merkt sich Ihre Favoriten."),
        },
    )
    campaign = _launch_or_review(campaign)
    if campaign.status != Campaign.Status.SCHEDULED:
        return campaign
    run = run_start(campaign_id=campaign.pk)
    if run is not None:
        # The demo does not send: the run is recorded as done, so no worker plans it.
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.COMPLETED, planned_at=now, finished_at=now, audience_size=0
        )
    return campaign_complete(campaign=campaign, note="demo: sent")


DEMO_CAMPAIGNS: list[tuple[str, Callable[[dict[str, Topic], dict[str, Segment], dt.datetime], Campaign]]] = [
    ("Weekend flash sale", _flash_sale),
    ("Good morning in your time zone", _local_morning),
    ("Weekly digest", _weekly_digest),
    ("Abandoned cart reminder", _cart_reminder),
    ("Spring collection A/B test", _ab_test),
    ("Welcome to the new app", _sent),
]


def demo_campaigns(topics: list[Topic]) -> int:
    """Create the demo campaigns that are missing (by name); return how many were created."""
    by_slug = {topic.slug: topic for topic in topics}
    segments = {segment.name: segment for segment in Segment.objects.all()}
    existing = set(
        Campaign.objects.filter(name__in=[name for name, _make in DEMO_CAMPAIGNS]).values_list(
            "name", flat=True
        )
    )
    now = timezone.now()
    created = 0
    for name, make in DEMO_CAMPAIGNS:
        if name not in existing:
            make(by_slug, segments, now)
            created += 1
    return created
