"""The fields and operators a segment condition can use (pure data, no database).

The builder in the admin renders its pickers from :func:`builder_catalog`; the
validator and the compiler read the same definitions, so the three never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

# Field types (what the value pickers look like).
TEXT, NUMBER, DATE, BOOLEAN, CHOICE, LIST, EVENT = (
    "text",
    "number",
    "date",
    "boolean",
    "choice",
    "list",
    "event",
)
TOPIC, SEGMENT = "topic", "segment"

# Value kinds (what an operator expects as its value).
V_NONE, V_TEXT, V_TEXTS, V_NUMBER, V_NUMBER_RANGE = "none", "text", "texts", "number", "number_range"
V_DATE, V_DATE_RANGE, V_DAYS, V_CHOICES, V_CHOICE, V_EVENT = (
    "date",
    "date_range",
    "days",
    "choices",
    "choice",
    "event",
)


@dataclass(frozen=True)
class Operator:
    key: str
    label: str
    value: str


def _ops(*items: tuple[str, str, str]) -> tuple[Operator, ...]:
    return tuple(Operator(*item) for item in items)


SET_OPS = _ops(("is_set", "is set", V_NONE), ("is_not_set", "is not set", V_NONE))
TEXT_OPS = _ops(
    ("eq", "is", V_TEXT),
    ("ne", "is not", V_TEXT),
    ("contains", "contains", V_TEXT),
    ("not_contains", "does not contain", V_TEXT),
    ("in", "is any of", V_TEXTS),
    ("not_in", "is none of", V_TEXTS),
)
NUMBER_OPS = _ops(
    ("eq", "=", V_NUMBER),
    ("ne", "≠", V_NUMBER),
    ("lt", "<", V_NUMBER),
    ("gt", ">", V_NUMBER),
    ("lte", "≤", V_NUMBER),
    ("gte", "≥", V_NUMBER),
    ("between", "is between", V_NUMBER_RANGE),
)
DATE_OPS = _ops(
    ("within_last", "within the last … days", V_DAYS),
    ("more_than_days_ago", "more than … days ago", V_DAYS),
    ("within_next", "within the next … days", V_DAYS),
    ("before", "before", V_DATE),
    ("after", "after", V_DATE),
    ("between", "between", V_DATE_RANGE),
)
BOOLEAN_OPS = _ops(("is_true", "is yes", V_NONE), ("is_false", "is no", V_NONE))
CHOICE_OPS = _ops(("in", "is any of", V_CHOICES), ("not_in", "is none of", V_CHOICES))
LIST_OPS = _ops(
    ("any_of", "include any of", V_CHOICES),
    ("all_of", "include all of", V_CHOICES),
    ("none_of", "include none of", V_CHOICES),
)
EVENT_OPS = _ops(
    ("did", "did … at least N times in the last D days", V_EVENT),
    ("did_not", "did not do … in the last D days", V_EVENT),
)
PLATFORM_OPS = _ops(
    ("any_of", "has an active device on any of", V_CHOICES),
    ("none_of", "has no active device on", V_CHOICES),
)
TOPIC_OPS = _ops(("opted_in", "is opted in to", V_CHOICE), ("opted_out", "is opted out of", V_CHOICE))
SEGMENT_OPS = _ops(("in", "is in segment", V_CHOICE), ("not_in", "is not in segment", V_CHOICE))

# Operators on event properties ("purchase where category is shoes").
PROPERTY_OPS = _ops(
    ("eq", "is", V_TEXT),
    ("ne", "is not", V_TEXT),
    ("contains", "contains", V_TEXT),
    ("gt", ">", V_NUMBER),
    ("gte", "≥", V_NUMBER),
    ("lt", "<", V_NUMBER),
    ("lte", "≤", V_NUMBER),
)

ATTRIBUTE_OPS = {
    TEXT: TEXT_OPS + SET_OPS,
    NUMBER: NUMBER_OPS + SET_OPS,
    DATE: DATE_OPS + SET_OPS,
    BOOLEAN: BOOLEAN_OPS + SET_OPS,
}
ATTRIBUTE_PREFIX = "attr."
PLATFORMS = (("android", "Android"), ("ios", "iOS"), ("web", "Web"))


@dataclass(frozen=True)
class Field:
    """A condition field: ``key`` as stored in the rules, its type and its operators."""

    key: str
    label: str
    group: str
    type: str
    operators: tuple[Operator, ...]
    # Where the value lives: a Subscriber column, or an attribute key.
    column: str = ""
    attribute: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    suggestions: tuple[str, ...] = ()
    # Choices outside the list are accepted (a country with nobody in it yet).
    open_choices: bool = False

    def operator(self, key: str) -> Operator | None:
        return next((op for op in self.operators if op.key == key), None)


@dataclass(frozen=True)
class SegmentRef:
    """What the compiler needs of another segment: its kind and rules."""

    pk: int
    name: str
    kind: str
    rules: Mapping[str, Any]


@dataclass(frozen=True)
class RuleContext:
    """Everything validation and compilation read from the database, loaded up front.

    Building it is the only database work; :func:`validate_rules` and
    :func:`compile_rules` are pure functions of the rules and this context.
    """

    attributes: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # key -> (type, label)
    topics: Mapping[int, str] = field(default_factory=dict)
    segments: Mapping[int, SegmentRef] = field(default_factory=dict)
    countries: Sequence[str] = ()
    timezones: Sequence[str] = ()
    interests: Sequence[str] = ()
    event_names: Sequence[str] = ()
    # The segment being edited (may not include itself, directly or through others).
    segment_id: int | None = None


def fields(context: RuleContext) -> dict[str, Field]:
    """Every field available under ``context``, by key, in the builder's order."""
    languages = tuple((code, str(name)) for code, name in settings.LANGUAGES)
    items = [
        Field("country", "Country", "Location", CHOICE, CHOICE_OPS + SET_OPS, column="country",
              choices=tuple((c, c) for c in context.countries), open_choices=True),
        Field("city", "City", "Location", TEXT, TEXT_OPS + SET_OPS, column="city"),
        Field("timezone", "Time zone", "Location", CHOICE, CHOICE_OPS, column="timezone",
              choices=tuple((tz, tz) for tz in context.timezones), open_choices=True),
        Field("language", "Language", "Profile", CHOICE, CHOICE_OPS, column="language", choices=languages),
        Field("interests", "Interests", "Profile", LIST, LIST_OPS, column="interests",
              choices=tuple((i, i) for i in context.interests), open_choices=True),
        Field("created_at", "Subscribed", "Profile", DATE, DATE_OPS, column="created_at"),
        Field("push_opt_in", "Push opt-in", "Consent", BOOLEAN, BOOLEAN_OPS, column="push_opt_in"),
        Field("topic", "Topic", "Consent", TOPIC, TOPIC_OPS,
              choices=tuple((str(pk), name) for pk, name in context.topics.items())),
        Field("sessions_30d", "Sessions in the last 30 days", "Usage", NUMBER, NUMBER_OPS,
              column="sessions_30d"),
        Field("last_seen_at", "Last seen", "Usage", DATE, DATE_OPS + SET_OPS, column="last_seen_at"),
        Field("device_platform", "Device platform", "Usage", CHOICE, PLATFORM_OPS, choices=PLATFORMS),
        Field("purchase_count", "Purchase count", "Purchases", NUMBER, NUMBER_OPS, column="purchase_count"),
        Field("total_spent", "Total spent", "Purchases", NUMBER, NUMBER_OPS, column="total_spent"),
        Field("last_purchase_at", "Last purchase", "Purchases", DATE, DATE_OPS + SET_OPS,
              column="last_purchase_at"),
        Field("event", "Event", "Behaviour", EVENT, EVENT_OPS, suggestions=tuple(context.event_names)),
        Field("segment", "Segment", "Segments", SEGMENT, SEGMENT_OPS,
              choices=tuple((str(ref.pk), ref.name) for ref in context.segments.values()
                            if ref.pk != context.segment_id)),
    ]  # fmt: skip
    for key, (type_, label) in sorted(context.attributes.items()):
        items.append(
            Field(f"{ATTRIBUTE_PREFIX}{key}", label or key, "Custom attributes", type_,
                  ATTRIBUTE_OPS[type_], attribute=key)
        )  # fmt: skip
    return {item.key: item for item in items}


def builder_catalog(context: RuleContext) -> dict[str, Any]:
    """The catalog as JSON for the admin's builder script."""

    def op(o: Operator) -> dict[str, str]:
        return {"key": o.key, "label": o.label, "value": o.value}

    return {
        "fields": [
            {
                "key": f.key,
                "label": f.label,
                "group": f.group,
                "type": f.type,
                "operators": [op(o) for o in f.operators],
                "choices": [list(choice) for choice in f.choices],
                "suggestions": list(f.suggestions),
                "open_choices": f.open_choices,
            }
            for f in fields(context).values()
        ],
        "property_operators": [op(o) for o in PROPERTY_OPS],
    }
