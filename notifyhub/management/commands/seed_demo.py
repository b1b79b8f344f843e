"""``manage.py seed_demo`` — demo data for ``make run`` (idempotent).

Creates the demo topics (translated) and ~1,000 subscribers spread over every
supported language, a dozen time zones and countries, with Android, iOS and web
devices, some opted out and some with dead tokens; segments, and a campaign of each
kind (``_demo_campaigns``). Makes sure the Marketer, Approver and Viewer groups have
their permissions. Running it again adds only what is missing and never touches rows
a person has edited since.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from audiences.models import ConsentRecord, Device, Event, Subscriber, Topic, TopicPreference
from campaigns.models import Campaign
from campaigns.roles import roles_sync
from notifyhub.management.commands._demo_behaviour import demo_events, demo_segments
from notifyhub.management.commands._demo_campaigns import DEMO_CAMPAIGNS, demo_campaigns

SEED = 20261129

TOPICS: list[dict[str, Any]] = [
    {
        "slug": "offers",
        "default_opt_in": True,
        "is_transactional": False,
        "name": {
            "en": "Offers",
            "es": "Ofertas",
            "fr": "Offres",
            "de": "Angebote",
            "it": "Offerte",
            "pt": "Ofertas",
            "pt_br": "Ofertas",
            "ar": "العروض",
        },
        "description": {
            "en": "Discounts and deals picked for you.",
            "es": "Descuentos y ofertas elegidos para ti.",
            "fr": "Des réductions choisies pour vous.",
            "de": "Rabatte und Angebote, für Sie ausgewählt.",
            "it": "Sconti e offerte scelti per te.",
            "pt": "Descontos e promoções escolhidos para si.",
            "pt_br": "Descontos e promoções escolhidos para você.",
            "ar": "خصومات وعروض مختارة لك.",
        },
    },
    {
        "slug": "order-updates",
        "default_opt_in": True,
        "is_transactional": True,
        "name": {
            "en": "Order updates",
            "es": "Estado del pedido",
            "fr": "Suivi de commande",
            "de": "Bestellstatus",
            "it": "Aggiornamenti ordine",
            "pt": "Estado da encomenda",
            "pt_br": "Status do pedido",
            "ar": "تحديثات الطلب",
        },
        "description": {
            "en": "Shipping and delivery of your orders.",
            "de": "Versand und Zustellung Ihrer Bestellungen.",
            "fr": "Expédition et livraison de vos commandes.",
        },
    },
    {
        "slug": "news",
        "default_opt_in": False,
        "is_transactional": False,
        "name": {
            "en": "News",
            "es": "Novedades",
            "fr": "Actualités",
            "de": "Neuigkeiten",
            "it": "Novità",
            "pt": "Novidades",
            "pt_br": "Novidades",
            "ar": "الأخبار",
        },
        "description": {"en": "New features and stories, about once a week."},
    },
    {
        "slug": "reminders",
        "default_opt_in": True,
        "is_transactional": False,
        "name": {
            "en": "Reminders",
            "es": "Recordatorios",
            "fr": "Rappels",
            "de": "Erinnerungen",
            "it": "Promemoria",
            "pt": "Lembretes",
            "pt_br": "Lembretes",
            "ar": "التذكيرات",
        },
        "description": {"en": "Your cart, your streak, your saved items."},
    },
]

# (country, city, time zone, language)
PLACES = [
    ("US", "New York", "America/New_York", "en"),
    ("US", "Los Angeles", "America/Los_Angeles", "en"),
    ("GB", "London", "Europe/London", "en"),
    ("ES", "Madrid", "Europe/Madrid", "es"),
    ("MX", "Ciudad de México", "America/Mexico_City", "es"),
    ("FR", "Paris", "Europe/Paris", "fr"),
    ("DE", "Berlin", "Europe/Berlin", "de"),
    ("AT", "Wien", "Europe/Vienna", "de"),
    ("IT", "Milano", "Europe/Rome", "it"),
    ("PT", "Lisboa", "Europe/Lisbon", "pt"),
    ("BR", "São Paulo", "America/Sao_Paulo", "pt-br"),
    ("EG", "Cairo", "Africa/Cairo", "ar"),
    ("AE", "Dubai", "Asia/Dubai", "ar"),
    ("JP", "Tokyo", "Asia/Tokyo", "en"),
    ("AU", "Sydney", "Australia/Sydney", "en"),
]

FIRST_NAMES = {
    "en": ["Emma", "Liam", "Olivia", "Noah", "Ava", "James"],
    "es": ["Lucía", "Mateo", "Sofía", "Hugo", "Martina", "Pablo"],
    "fr": ["Chloé", "Louis", "Léa", "Gabriel", "Inès", "Jules"],
    "de": ["Jürgen", "Mia", "Lukas", "Hannah", "Felix", "Grete"],
    "it": ["Giulia", "Leonardo", "Aurora", "Francesco", "Sofia", "Matteo"],
    "pt": ["Beatriz", "João", "Leonor", "Tomás", "Matilde", "Duarte"],
    "pt-br": ["Ana", "Miguel", "Helena", "Arthur", "Alice", "Heitor"],
    "ar": ["ليلى", "محمد", "فاطمة", "أحمد", "مريم", "يوسف"],
}
LAST_NAMES = ["Smith", "García", "Martin", "Müller", "Rossi", "Silva", "Haddad", "Tanaka"]
INTERESTS = ["sports", "fashion", "tech", "travel", "food", "music", "games", "books"]
PLANS = ["free", "free", "free", "plus", "pro"]


class Command(BaseCommand):
    help = "Create demo topics, subscribers, devices, segments and campaigns (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=1000, help="Subscribers to have (default 1000).")

    def handle(self, *args: Any, count: int, **options: Any) -> None:
        with transaction.atomic():
            roles_sync(apps)
            topics = self._topics()
            created = self._subscribers(count, topics)
            segments = demo_segments(topics)
            demo_campaigns(topics)
        total = Subscriber.objects.filter(external_id__startswith="demo-").count()
        campaigns = Campaign.objects.filter(name__in=[name for name, _make in DEMO_CAMPAIGNS]).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(topics)} topics, {total} demo subscribers "
                f"({created} created now), {Device.objects.count()} devices, "
                f"{Event.objects.filter(idempotency_key__startswith='demo-').count()} events, "
                f"{segments} demo segments, {campaigns} demo campaigns."
            )
        )

    def _topics(self) -> list[Topic]:
        topics = []
        for order, spec in enumerate(TOPICS):
            defaults: dict[str, Any] = {
                "default_opt_in": spec["default_opt_in"],
                "is_transactional": spec["is_transactional"],
                "sort_order": order,
                "name": spec["name"]["en"],
                "description": spec["description"]["en"],
            }
            for lang, text in spec["name"].items():
                defaults[f"name_{lang}"] = text
            for lang, text in spec["description"].items():
                defaults[f"description_{lang}"] = text
            topic, _created = Topic.objects.get_or_create(slug=spec["slug"], defaults=defaults)
            topics.append(topic)
        return topics

    def _subscribers(self, count: int, topics: list[Topic]) -> int:
        rng = random.Random(SEED)
        now = timezone.now()
        wanted = [f"demo-{i:05d}" for i in range(1, count + 1)]
        existing = set(
            Subscriber.objects.filter(external_id__in=wanted).values_list("external_id", flat=True)
        )
        new_subscribers: list[Subscriber] = []
        devices_for: dict[str, list[tuple[str, str, bool]]] = {}
        opt_outs: dict[str, list[str]] = {}
        for index, external_id in enumerate(wanted):
            # Draw every value even for existing rows so the sequence stays stable.
            country, city, tz, language = PLACES[index % len(PLACES)]
            first = rng.choice(FIRST_NAMES[language])
            last = rng.choice(LAST_NAMES)
            opted_in = rng.random() > 0.12
            sessions = rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 21])
            purchases = rng.choice([0, 0, 0, 1, 1, 2, 3, 5, 9])
            spent = Decimal(purchases * rng.randint(12, 140)).quantize(Decimal("0.01"))
            last_seen = now - dt.timedelta(hours=rng.randint(1, 24 * 90))
            n_devices = rng.choice([1, 1, 1, 2])
            platforms = rng.sample(["android", "ios", "web"], n_devices)
            dead = rng.random() < 0.05
            topic_out = [t.slug for t in topics if not t.is_transactional and rng.random() < 0.1]
            interests = rng.sample(INTERESTS, rng.randint(0, 3))
            plan = rng.choice(PLANS)
            if last_seen < now - dt.timedelta(days=30):
                sessions = 0  # the aggregate counts the last 30 days only
            if external_id in existing:
                continue
            new_subscribers.append(
                Subscriber(
                    external_id=external_id,
                    email=f"{external_id}@example.com",
                    first_name=first,
                    last_name=last,
                    language=language,
                    timezone=tz,
                    country=country,
                    city=city,
                    interests=interests,
                    attributes={"plan": plan, "signup_year": 2019 + index % 7},
                    last_seen_at=last_seen,
                    sessions_30d=sessions,
                    purchase_count=purchases,
                    total_spent=spent,
                    last_purchase_at=(last_seen - dt.timedelta(days=rng.randint(0, 30)))
                    if purchases
                    else None,
                    push_opt_in=opted_in,
                )
            )
            devices_for[external_id] = [
                (platform, f"demo-{platform}-{external_id}-{rng.getrandbits(64):016x}", not (dead and i == 0))
                for i, platform in enumerate(platforms)
            ]
            opt_outs[external_id] = topic_out

        if not new_subscribers:
            return 0
        Subscriber.objects.bulk_create(new_subscribers, batch_size=500)
        by_external = dict(
            Subscriber.objects.filter(external_id__in=list(devices_for)).values_list("external_id", "pk")
        )
        devices = [
            Device(
                subscriber_id=by_external[external_id],
                platform=platform,
                token=token,
                is_active=active,
                invalidated_at=None if active else now,
                invalidation_reason="" if active else Device.InvalidationReason.UNREGISTERED,
                last_seen_at=now,
            )
            for external_id, specs in devices_for.items()
            for platform, token, active in specs
        ]
        Device.objects.bulk_create(devices, batch_size=500)
        topic_by_slug = {t.slug: t for t in topics}
        preferences = [
            TopicPreference(subscriber_id=by_external[external_id], topic=topic_by_slug[slug], opted_in=False)
            for external_id, slugs in opt_outs.items()
            for slug in slugs
        ]
        TopicPreference.objects.bulk_create(preferences, batch_size=500)
        # The ledger explains every state the demo starts in.
        detail = {"source": ConsentRecord.Source.SYSTEM, "source_detail": "seed_demo"}
        records = [
            ConsentRecord(
                subscriber_id=by_external[s.external_id],
                field="push_opt_in",
                old_value=None,
                new_value=s.push_opt_in,
                **detail,
            )
            for s in new_subscribers
        ] + [
            ConsentRecord(
                subscriber_id=pref.subscriber_id,
                field="topic",
                topic=pref.topic,
                old_value=pref.topic.default_opt_in,
                new_value=False,
                **detail,
            )
            for pref in preferences
        ]
        ConsentRecord.objects.bulk_create(records, batch_size=500)
        Event.objects.bulk_create(
            demo_events([by_external[s.external_id] for s in new_subscribers], new_subscribers, now),
            batch_size=1000,
            ignore_conflicts=True,
        )
        return len(new_subscribers)
