"""Rule tree → one Django ``Q`` over Subscriber (pure: builds SQL, runs none).

Every leaf compiles to a two-valued condition (never SQL NULL), so negations —
"is not", "none of", the exclusion group, "not in segment" — mean exactly what they
say: someone without a ``plan`` attribute *is* in "plan is not pro". Behaviour over
events becomes ``EXISTS`` / ``IN (… GROUP BY … HAVING count(*) >= N)`` subqueries
that PostgreSQL runs as semi-joins on the (subscriber, name, occurred_at) index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from functools import reduce
from typing import Any

from django.db.models import Count, Exists, Expression, OuterRef, Q
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IExact,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from django.utils import timezone

from audiences.models import Device, Event, SegmentMember, Topic, TopicPreference
from audiences.segments import catalog as c
from audiences.segments.expressions import JsonArrayContains, JsonValue
from audiences.segments.validation import validate_rules
from notifyhub.exceptions import ApplicationError


class SegmentRulesError(ApplicationError):
    """The rules cannot be compiled (they are invalid, or a referenced segment is)."""


_LOOKUPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": Exact,
    "lt": LessThan,
    "gt": GreaterThan,
    "lte": LessThanOrEqual,
    "gte": GreaterThanOrEqual,
}


def _any(qs: list[Q]) -> Q:
    return reduce(lambda a, b: a | b, qs) if qs else Q(pk__in=[])


def _all(qs: list[Q]) -> Q:
    return reduce(lambda a, b: a & b, qs) if qs else Q()


def _expr(lookup: Any) -> Q:
    """A lookup on a JSON expression, made two-valued (NULL → false)."""
    return Q(lookup) & Q(IsNull(lookup.lhs, False))


class Compiler:
    def __init__(self, context: c.RuleContext, now: dt.datetime, stack: frozenset[int] = frozenset()) -> None:
        self.context = context
        self.fields = c.fields(context)
        self.now = now
        self.today = timezone.localtime(now, timezone.get_default_timezone()).date()
        self.stack = stack

    def tree(self, rules: Mapping[str, Any]) -> Q:
        include = self.group(rules)
        exclude = rules.get("exclude") or {}
        if exclude.get("conditions"):
            return include & ~self.group(exclude)
        return include

    def group(self, node: Mapping[str, Any]) -> Q:
        parts = [
            self.group(child) if "conditions" in child else self.condition(child)
            for child in node.get("conditions", [])
        ]
        if not parts:
            return Q()
        return _any(parts) if node.get("match") == "any" else _all(parts)

    def condition(self, node: Mapping[str, Any]) -> Q:
        spec = self.fields[node["field"]]
        op, value = node["op"], node.get("value")
        if spec.attribute:
            return self.attribute(spec, op, value)
        handler = {
            c.TEXT: self.text_column,
            c.NUMBER: self.number_column,
            c.DATE: self.date_column,
            c.BOOLEAN: self.boolean_column,
            c.LIST: self.list_column,
            c.EVENT: self.event,
            c.TOPIC: self.topic,
            c.SEGMENT: self.segment,
        }.get(spec.type)
        if spec.key == "device_platform":
            return self.platform(op, value)
        if handler is None:  # CHOICE columns
            return self.choice_column(spec, op, value)
        return handler(spec, op, value)

    # -- columns ---------------------------------------------------------------

    def text_column(self, spec: c.Field, op: str, value: Any) -> Q:
        col = spec.column
        if op in ("is_set", "is_not_set"):
            filled = ~Q(**{col: ""})
            return filled if op == "is_set" else ~filled
        if op in ("in", "not_in"):
            q = _any([Q(**{f"{col}__iexact": v}) for v in value])
            return q if op == "in" else ~q
        if op in ("contains", "not_contains"):
            q = Q(**{f"{col}__icontains": value})
            return q if op == "contains" else ~q
        q = Q(**{f"{col}__iexact": value})
        return q if op == "eq" else ~q

    def choice_column(self, spec: c.Field, op: str, value: Any) -> Q:
        col = spec.column
        if op in ("is_set", "is_not_set"):
            filled = ~Q(**{col: ""})
            return filled if op == "is_set" else ~filled
        q = Q(**{f"{col}__in": value})
        return q if op == "in" else ~q

    def number_column(self, spec: c.Field, op: str, value: Any) -> Q:
        col = spec.column
        if op == "between":
            return Q(**{f"{col}__gte": value[0], f"{col}__lte": value[1]})
        if op == "ne":
            return ~Q(**{col: value})
        return Q(**{f"{col}__{'exact' if op == 'eq' else op}": value})

    def _day_start(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_default_timezone())

    def date_column(self, spec: c.Field, op: str, value: Any) -> Q:
        col = spec.column
        if op in ("is_set", "is_not_set"):
            return Q(**{f"{col}__isnull": op == "is_not_set"})
        if op == "within_last":
            return Q(**{f"{col}__gte": self.now - dt.timedelta(days=value), f"{col}__lte": self.now})
        if op == "more_than_days_ago":
            return Q(**{f"{col}__lt": self.now - dt.timedelta(days=value)})
        if op == "within_next":
            return Q(**{f"{col}__gte": self.now, f"{col}__lte": self.now + dt.timedelta(days=value)})
        if op == "before":
            return Q(**{f"{col}__lt": self._day_start(dt.date.fromisoformat(value))})
        if op == "after":
            return Q(**{f"{col}__gte": self._day_start(dt.date.fromisoformat(value) + dt.timedelta(days=1))})
        start, end = (dt.date.fromisoformat(v) for v in value)
        return Q(
            **{
                f"{col}__gte": self._day_start(start),
                f"{col}__lt": self._day_start(end + dt.timedelta(days=1)),
            }
        )

    def boolean_column(self, spec: c.Field, op: str, value: Any) -> Q:
        return Q(**{spec.column: op == "is_true"})

    def list_column(self, spec: c.Field, op: str, value: Any) -> Q:
        parts = [Q(JsonArrayContains(spec.column, v)) for v in value]
        if op == "all_of":
            return _all(parts)
        return _any(parts) if op == "any_of" else ~_any(parts)

    # -- custom attributes -------------------------------------------------------

    def attribute(self, spec: c.Field, op: str, value: Any) -> Q:
        return typed_json_condition("attributes", spec.attribute, spec.type, op, value, self.today)

    # -- related rows --------------------------------------------------------------

    def platform(self, op: str, value: Any) -> Q:
        devices = Device.objects.filter(subscriber=OuterRef("pk"), is_active=True, platform__in=value)
        return Q(Exists(devices)) if op == "any_of" else ~Q(Exists(devices))

    def topic(self, spec: c.Field, op: str, value: Any) -> Q:
        q = topic_opt_in_q(value)
        return q if op == "opted_in" else ~q

    def event(self, spec: c.Field, op: str, value: Any) -> Q:
        window = Event.objects.filter(
            name=value["name"], occurred_at__gte=self.now - dt.timedelta(days=value["days"])
        )
        where = value.get("where")
        if where:
            kind = c.NUMBER if isinstance(where["value"], int | float) else c.TEXT
            window = window.filter(
                typed_json_condition("properties", where["key"], kind, where["op"], where["value"])
            )
        if op == "did_not":
            return ~Q(Exists(window.filter(subscriber=OuterRef("pk"))))
        if value["count"] <= 1:
            return Q(Exists(window.filter(subscriber=OuterRef("pk"))))
        # At least N times: one grouped pass over the window, used as a semi-join.
        counted = (
            window.order_by()
            .values("subscriber_id")
            .annotate(times=Count("*"))
            .filter(times__gte=value["count"])
            .values("subscriber_id")
        )
        return Q(pk__in=counted)

    def segment(self, spec: c.Field, op: str, value: Any) -> Q:
        q = self.segment_q(value)
        return q if op == "in" else ~q

    def segment_q(self, pk: int) -> Q:
        ref = self.context.segments.get(pk)
        if ref is None:
            raise SegmentRulesError("A segment used by these rules no longer exists.")
        if ref.kind == "static":
            return Q(Exists(SegmentMember.objects.filter(segment_id=pk, subscriber=OuterRef("pk"))))
        if pk in self.stack:
            raise SegmentRulesError(f"“{ref.name}” includes itself through other segments; remove the loop.")
        checked = validate_rules(ref.rules, context=self.context, require_conditions=False)
        if not checked.ok:
            raise SegmentRulesError(
                f"The segment “{ref.name}” has rules that are no longer valid "
                f"({checked.problems[0]}); fix that segment first."
            )
        return Compiler(self.context, self.now, self.stack | {pk}).tree(checked.rules)


def topic_opt_in_q(topic_id: int) -> Q:
    """Opted in to the topic: an explicit yes, or no choice and the topic defaults to yes."""
    chosen = TopicPreference.objects.filter(subscriber=OuterRef("pk"), topic_id=topic_id)
    default_yes = Topic.objects.filter(pk=topic_id, default_opt_in=True)
    return Q(Exists(chosen.filter(opted_in=True))) | (~Q(Exists(chosen)) & Q(Exists(default_yes)))


def typed_json_condition(
    column: str, key: str, kind: str, op: str, value: Any, today: dt.date | None = None
) -> Q:
    """A typed condition on one key of a JSON object column; missing or mistyped → false."""
    expr: Expression = JsonValue(column, key, kind)
    present = Q(IsNull(expr, False))
    if kind == c.TEXT:
        present &= ~Q(Exact(expr, ""))
    if op == "is_set":
        return present
    if op == "is_not_set":
        return ~present
    if kind == c.BOOLEAN:
        return _expr(Exact(expr, "true" if op == "is_true" else "false"))
    if kind == c.TEXT:
        if op in ("in", "not_in"):
            q = _any([_expr(IExact(expr, v)) for v in value])
            return q if op == "in" else ~q
        q = _expr(IContains(expr, value) if "contains" in op else IExact(expr, value))
        return ~q if op in ("ne", "not_contains") else q
    if kind == c.NUMBER:
        if op == "between":
            return _expr(GreaterThanOrEqual(expr, value[0])) & _expr(LessThanOrEqual(expr, value[1]))
        q = _expr(_LOOKUPS["eq" if op == "ne" else op](expr, value))
        return ~q if op == "ne" else q
    # DATE: ISO day strings compare correctly as text.
    day = today or timezone.localdate()
    if op == "within_last":
        low, high = day - dt.timedelta(days=value), day
    elif op == "within_next":
        low, high = day, day + dt.timedelta(days=value)
    elif op == "more_than_days_ago":
        return _expr(LessThan(expr, (day - dt.timedelta(days=value)).isoformat()))
    elif op == "before":
        return _expr(LessThan(expr, value))
    elif op == "after":
        return _expr(GreaterThan(expr, value))
    else:
        low, high = (dt.date.fromisoformat(v) for v in value)
    return _expr(GreaterThanOrEqual(expr, low.isoformat())) & _expr(LessThanOrEqual(expr, high.isoformat()))


def compile_rules(rules: Mapping[str, Any], *, context: c.RuleContext, now: dt.datetime | None = None) -> Q:
    """Compile validated ``rules`` to a ``Q`` on Subscriber. Raises SegmentRulesError if invalid."""
    checked = validate_rules(rules, context=context, require_conditions=False)
    if not checked.ok:
        raise SegmentRulesError("; ".join(str(p) for p in checked.problems))
    return Compiler(context, now or timezone.now()).tree(checked.rules)
