"""Demo events and segments for ``seed_demo``, consistent with the subscribers' aggregates.

Events are drawn from a generator seeded per subscriber, so adding them did not
change the values ``seed_demo`` draws for the subscribers themselves. Purchases add
up to ``total_spent``, the last one happens at ``last_purchase_at``, and there are
``sessions_30d`` ``session_start`` events in the last 30 days, the latest at
``last_seen_at``.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from audiences.models import AttributeDefinition, Event, Segment, Subscriber, Topic
from audiences.services import segment_refresh_count, segment_save

CATEGORIES = ["shoes", "books", "electronics", "fashion", "groceries", "games"]

ATTRIBUTES = [
    {"key": "plan", "label": "Plan", "type": AttributeDefinition.Type.TEXT},
    {"key": "signup_year", "label": "Signup year", "type": AttributeDefinition.Type.NUMBER},
]


def _rules(*conditions: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "match": "all",
        "conditions": list(conditions),
        "exclude": {"match": "any", "conditions": exclude or []},
    }


def _c(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


SEGMENTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Lapsed buyers in Spain",
        "Bought before, but not in the last 30 days.",
        _rules(
            _c("country", "in", ["ES"]),
            _c("purchase_count", "gte", 1),
            _c("last_purchase_at", "more_than_days_ago", 30),
        ),
    ),
    (
        "High spenders, iOS",
        "Spent 300 or more, with an active iPhone or iPad.",
        _rules(_c("total_spent", "gte", 300), _c("device_platform", "any_of", ["ios"])),
    ),
    (
        "Cart abandoners this week",
        "Added to cart in the last 7 days without buying since.",
        _rules(
            _c("event", "did", {"name": "add_to_cart", "count": 1, "days": 7, "where": None}),
            _c("event", "did_not", {"name": "purchase", "count": 1, "days": 7, "where": None}),
        ),
    ),
    (
        "Engaged on the Pro plan",
        "Pro subscribers with five or more sessions in 30 days.",
        _rules(_c("attr.plan", "eq", "pro"), _c("sessions_30d", "gte", 5)),
    ),
]


def demo_events(pks: list[int], subscribers: list[Subscriber], now: dt.datetime) -> list[Event]:
    events: list[Event] = []
    for pk, s in zip(pks, subscribers, strict=True):
        rng = random.Random(s.external_id)

        def add(
            name: str, at: dt.datetime, index: int, pk: int = pk, who: str = s.external_id, **properties: Any
        ) -> None:
            key = f"demo-{who}-{name}-{index}"
            events.append(
                Event(subscriber_id=pk, name=name, occurred_at=at, properties=properties, idempotency_key=key)
            )

        if s.purchase_count and s.last_purchase_at is not None:
            cents = int(Decimal(s.total_spent) * 100)
            cuts = (
                sorted(rng.sample(range(1, cents), s.purchase_count - 1)) if cents > s.purchase_count else []
            )
            amounts = [b - a for a, b in zip([0, *cuts], [*cuts, cents], strict=True)]
            at = s.last_purchase_at
            for index, amount in enumerate(amounts or [cents]):
                add(
                    "purchase",
                    at,
                    index,
                    amount=amount / 100,
                    currency="EUR",
                    category=rng.choice(CATEGORIES),
                )
                add(
                    "add_to_cart",
                    at - dt.timedelta(minutes=rng.randint(2, 90)),
                    index,
                    category=rng.choice(CATEGORIES),
                )
                at -= dt.timedelta(days=rng.randint(3, 60))
        if s.last_seen_at is not None:
            for index in range(s.sessions_30d):
                start = s.last_seen_at if index == 0 else now - dt.timedelta(hours=rng.randint(1, 24 * 29))
                add("session_start", min(start, s.last_seen_at), index)
            if rng.random() < 0.15:  # abandoned carts: no purchase afterwards
                add("add_to_cart", s.last_seen_at, 999, category=rng.choice(CATEGORIES))
    return events


def demo_segments(topics: list[Topic]) -> int:
    """Attribute definitions and the demo segments; existing ones (maybe edited) are kept."""
    for spec in ATTRIBUTES:
        AttributeDefinition.objects.get_or_create(key=spec["key"], defaults=spec)
    existing = set(Segment.objects.values_list("name", flat=True))
    for name, description, rules in SEGMENTS:
        if name not in existing:
            segment = segment_save(name=name, description=description, rules=rules)
            segment_refresh_count(segment=segment)
    return Segment.objects.filter(name__in=[name for name, _d, _r in SEGMENTS]).count()
