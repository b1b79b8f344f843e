"""The template context: plain values only, behind objects that answer item lookups only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.template import Context

SUBSCRIBER_FIELDS = ("first_name", "last_name", "city", "country", "language", "timezone")
# Longer text values are cut before rendering: no push message shows more, and it
# bounds the work filters do per subscriber.
CONTEXT_VALUE_MAX_CHARS = 1000

_DROP = object()


def _plain(value: Any) -> Any:
    """``value`` as a plain scalar, or ``_DROP``: nothing in the context has methods to call."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        # str.__str__ turns subclasses (TextChoices members, SafeString) into a plain str.
        return str.__str__(value)[:CONTEXT_VALUE_MAX_CHARS]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal | dt.date):  # dt.datetime is a dt.date
        return value
    return _DROP


def _plain_values(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        return {}
    plain = {key: _plain(value) for key, value in values.items() if isinstance(key, str)}
    return {key: value for key, value in plain.items() if value is not _DROP}


def build_context(
    *,
    subscriber: Mapping[str, Any],
    attributes: Mapping[str, Any],
    latest_events: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The template context of one subscriber, with plain values only.

    Only the six subscriber fields are copied (a missing or unusable one becomes "").
    Attribute and event-property values are kept when they are text, numbers,
    booleans, ``None``, dates or datetimes. Anything else is dropped rather than
    stringified — nested objects and lists in event properties (a ``{'sku': …}`` in a
    push is noise, and a template cannot address them anyway), model instances,
    objects with methods — so it renders as missing and ``default`` applies.
    """
    fields = {name: _plain(subscriber.get(name, "")) for name in SUBSCRIBER_FIELDS}
    return {
        "subscriber": {name: "" if value is _DROP else value for name, value in fields.items()},
        "attributes": _plain_values(attributes),
        "event": {
            name: _plain_values(properties)
            for name, properties in latest_events.items()
            if isinstance(name, str) and isinstance(properties, Mapping)
        },
    }


class Values:
    """Values a template can look up by key, and nothing else.

    Django tries ``obj[key]``, then ``getattr(obj, key)``: on a dict,
    ``{{ attributes.items }}`` would call ``dict.items`` (and ``attributes.clear``
    would empty it). This class has no public attribute to fall back on, and names
    starting with ``_`` are refused at compile time.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]


def template_context(context: Mapping[str, Any]) -> Context:
    """A render context from a :func:`build_context` result (normalized again: callers may hand-make one)."""

    def part(name: str) -> Mapping[str, Any]:
        value = context.get(name)
        return value if isinstance(value, Mapping) else {}

    plain = build_context(
        subscriber=part("subscriber"), attributes=part("attributes"), latest_events=part("event")
    )
    return Context(
        {
            "subscriber": Values(plain["subscriber"]),
            "attributes": Values(plain["attributes"]),
            "event": Values({name: Values(properties) for name, properties in plain["event"].items()}),
        },
        autoescape=False,  # push text is not HTML
    )
