"""Read what validation and compilation need from the database, in a few queries."""

from __future__ import annotations

from django.db import connection

from audiences.models import AttributeDefinition, Event, Segment, Subscriber, Topic
from audiences.segments.catalog import RuleContext, SegmentRef

# Suggestions in the builder come from recent rows, so the catalog stays cheap on
# millions of subscribers; any other value can still be typed in.
SUGGESTION_SAMPLE = 20_000
MAX_SUGGESTIONS = 300


def rule_context_load(*, segment_id: int | None = None, for_builder: bool = False) -> RuleContext:
    """Attributes, topics and segments (three queries); with ``for_builder``, value suggestions too."""
    attributes = {
        key: (type_, label)
        for key, type_, label in AttributeDefinition.objects.values_list("key", "type", "label")
    }
    topics = dict(Topic.objects.filter(is_active=True).values_list("pk", "name"))
    segments = {
        pk: SegmentRef(pk=pk, name=name, kind=kind, rules=rules or {})
        for pk, name, kind, rules in Segment.objects.order_by("name").values_list(
            "pk", "name", "kind", "rules"
        )
    }
    if not for_builder:
        return RuleContext(attributes=attributes, topics=topics, segments=segments, segment_id=segment_id)
    return RuleContext(
        attributes=attributes,
        topics=topics,
        segments=segments,
        segment_id=segment_id,
        countries=_distinct_recent(Subscriber, "country"),
        timezones=_distinct_recent(Subscriber, "timezone"),
        interests=_recent_interests(),
        event_names=_distinct_recent(Event, "name"),
    )


def _distinct_recent(model: type[Subscriber] | type[Event], column: str) -> list[str]:
    recent = model.objects.order_by("-pk").values_list(column, flat=True)[:SUGGESTION_SAMPLE]
    return sorted({value for value in recent if value})[:MAX_SUGGESTIONS]


def _recent_interests() -> list[str]:
    table = connection.ops.quote_name(Subscriber._meta.db_table)
    if connection.vendor == "postgresql":
        sql = (
            "SELECT DISTINCT value FROM (SELECT interests FROM "  # noqa: S608
            f"{table} ORDER BY id DESC LIMIT %s) AS recent, "
            "jsonb_array_elements_text(CASE WHEN jsonb_typeof(interests) = 'array' "
            "THEN interests ELSE '[]'::jsonb END) AS value ORDER BY value LIMIT %s"
        )
    else:
        sql = (
            "SELECT DISTINCT element.value FROM (SELECT interests FROM "  # noqa: S608
            f"{table} ORDER BY id DESC LIMIT %s) AS recent, "
            "json_each(CASE WHEN json_type(recent.interests) = 'array' THEN recent.interests ELSE '[]' END) "
            "AS element WHERE element.type = 'text' ORDER BY element.value LIMIT %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [SUGGESTION_SAMPLE, MAX_SUGGESTIONS])
        return [row[0] for row in cursor.fetchall()]
