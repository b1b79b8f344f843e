"""Validation of rule trees, with messages a marketer can act on (pure, no database).

A rule tree is JSON::

    {"match": "all" | "any",
     "conditions": [<condition or group>, ...],
     "exclude": {"match": "any", "conditions": [...]}}   # optional

A group is ``{"match": ..., "conditions": [...]}``; a condition is
``{"field": "country", "op": "in", "value": ["ES"]}``. :func:`validate_rules`
returns the tree normalized (numbers parsed, codes upper-cased, text trimmed) and
every problem found, each with the path of the node it belongs to so the builder
can show it next to the right condition.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from audiences.segments import catalog as c

MAX_DEPTH = 4
MAX_CONDITIONS = 100
MAX_LIST = 1000
MAX_DAYS = 3650
MAX_COUNT = 1_000_000
MATCHES = ("all", "any")


@dataclass(frozen=True)
class Problem:
    path: str  # "conditions.1.conditions.0", "exclude.conditions.2", "" for the tree
    where: str  # "Condition 2 in group 1"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass
class Validated:
    rules: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def empty_rules() -> dict[str, Any]:
    return {"match": "all", "conditions": [], "exclude": {"match": "any", "conditions": []}}


def _where(trail: list[tuple[str, int]]) -> str:
    # trail: ("group"|"condition", index) from the root down; exclusion marked by "exclude".
    parts = []
    for kind, index in reversed(trail):
        parts.append("the exclusions" if kind == "exclude" else f"{kind} {index + 1}")
    text = " in ".join(parts)
    return text[:1].upper() + text[1:]


class _Validator:
    def __init__(self, context: c.RuleContext) -> None:
        self.context = context
        self.fields = c.fields(context)
        self.problems: list[Problem] = []
        self.count = 0

    def problem(self, path: str, trail: list[tuple[str, int]], message: str) -> None:
        self.problems.append(Problem(path, _where(trail), message))

    def group(self, node: Any, path: str, trail: list[tuple[str, int]], depth: int) -> dict[str, Any]:
        prefix = f"{path}." if path else ""
        if not isinstance(node, Mapping):
            self.problem(path, trail, "This group is damaged; remove it and add it again.")
            return {"match": "all", "conditions": []}
        match = node.get("match", "all")
        if match not in MATCHES:
            self.problem(path, trail, "Choose whether all or any of the conditions must match.")
            match = "all"
        children = node.get("conditions", [])
        if not isinstance(children, list):
            self.problem(path, trail, "This group is damaged; remove it and add it again.")
            children = []
        if depth > 1 and not children:
            self.problem(path, trail, "This group is empty: add a condition or remove the group.")
        out: list[dict[str, Any]] = []
        for index, child in enumerate(children):
            child_path = f"{prefix}conditions.{index}"
            if isinstance(child, Mapping) and "conditions" in child:
                child_trail = [*trail, ("group", index)]
                if depth >= MAX_DEPTH:
                    self.problem(
                        child_path, child_trail, f"Groups can be nested at most {MAX_DEPTH - 1} deep."
                    )
                    continue
                out.append(self.group(child, child_path, child_trail, depth + 1))
            else:
                self.count += 1
                out.append(self.condition(child, child_path, [*trail, ("condition", index)]))
        return {"match": match, "conditions": out}

    def condition(self, node: Any, path: str, trail: list[tuple[str, int]]) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            self.problem(path, trail, "This condition is damaged; remove it and add it again.")
            return {}
        key = node.get("field")
        spec = self.fields.get(key) if isinstance(key, str) else None
        if spec is None:
            if isinstance(key, str) and key.startswith(c.ATTRIBUTE_PREFIX):
                name = key.removeprefix(c.ATTRIBUTE_PREFIX)
                self.problem(
                    path, trail, f"There is no custom attribute “{name}” any more; pick another field."
                )
            else:
                self.problem(path, trail, "Pick a field.")
            return {"field": key, "op": node.get("op"), "value": node.get("value")}
        op = spec.operator(node.get("op", ""))
        if op is None:
            self.problem(path, trail, f"Pick how to compare “{spec.label}”.")
            return {"field": key, "op": node.get("op"), "value": node.get("value")}
        try:
            value = self.value(spec, op, node.get("value"))
        except ValueError as exc:
            self.problem(path, trail, f"“{spec.label}” {op.label}: {exc}")
            value = node.get("value")
        return {"field": key, "op": op.key, "value": value}

    # -- values --------------------------------------------------------------

    def value(self, spec: c.Field, op: c.Operator, raw: Any) -> Any:
        kind = op.value
        if kind == c.V_NONE:
            return None
        if kind == c.V_TEXT:
            return _text(raw)
        if kind == c.V_TEXTS:
            return _texts(raw)
        if kind == c.V_NUMBER:
            return _number(raw)
        if kind == c.V_NUMBER_RANGE:
            low, high = _pair(raw, _number, "two numbers")
            if low > high:
                raise ValueError("the first number must not be larger than the second.")
            return [low, high]
        if kind == c.V_DATE:
            return _date(raw)
        if kind == c.V_DATE_RANGE:
            start, end = _pair(raw, _date, "two dates")
            if start > end:
                raise ValueError("the first date must not be after the second.")
            return [start, end]
        if kind == c.V_DAYS:
            return _whole(raw, "a number of days", 1, MAX_DAYS)
        if kind == c.V_CHOICES:
            return self.choices(spec, _texts(raw))
        if kind == c.V_CHOICE:
            return self.choice(spec, raw)
        return self.event(op, raw)

    def choices(self, spec: c.Field, values: list[str]) -> list[str]:
        if spec.key == "country":
            values = [v.upper() for v in values]
            bad = [v for v in values if not re.fullmatch(r"[A-Z]{2}", v)]
            if bad:
                raise ValueError(f"use two-letter country codes like ES or DE (not {', '.join(bad)}).")
        elif spec.key == "timezone":
            bad = [v for v in values if v not in _timezones()]
            if bad:
                raise ValueError(f"{', '.join(bad)} is not a time zone; use names like Europe/Madrid.")
        elif not spec.open_choices:
            allowed = {value for value, _label in spec.choices}
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"{', '.join(bad)} is not one of the choices.")
        return values

    def choice(self, spec: c.Field, raw: Any) -> int:
        try:
            pk = int(str(raw))
        except ValueError:
            raise ValueError(f"pick a {spec.type}.") from None
        if spec.type == c.TOPIC:
            if pk not in self.context.topics:
                raise ValueError("that topic no longer exists; pick another.")
            return pk
        ref = self.context.segments.get(pk)
        if ref is None:
            raise ValueError("that segment no longer exists; pick another.")
        if pk == self.context.segment_id:
            raise ValueError("a segment cannot include itself.")
        if self.context.segment_id is not None:
            chain = _path_to(pk, self.context.segment_id, self.context.segments)
            if chain is not None:
                names = " → ".join(f"“{self.context.segments[p].name}”" for p in chain)
                raise ValueError(f"that would be a loop ({names} → this segment); pick another segment.")
        return pk

    def event(self, op: c.Operator, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise ValueError("name the event, e.g. purchase.")
        name = _text(raw.get("name"), "name the event, e.g. purchase.")
        days = _whole(raw.get("days"), "the number of days to look back", 1, MAX_DAYS)
        count = 1 if op.key == "did_not" else _whole(raw.get("count", 1), "how many times", 1, MAX_COUNT)
        where = raw.get("where")
        if where in (None, {}) or (isinstance(where, Mapping) and not where.get("key")):
            return {"name": name, "count": count, "days": days, "where": None}
        if not isinstance(where, Mapping):
            raise ValueError("the property filter is damaged; remove it and add it again.")
        prop_key = _text(where.get("key"), "name the event property to filter on.")
        prop_op = next((o for o in c.PROPERTY_OPS if o.key == where.get("op")), None)
        if prop_op is None:
            raise ValueError(f"pick how to compare the property “{prop_key}”.")
        prop_value: Any = (
            _number(where.get("value")) if prop_op.value == c.V_NUMBER else _text(where.get("value"))
        )
        return {
            "name": name,
            "count": count,
            "days": days,
            "where": {"key": prop_key, "op": prop_op.key, "value": prop_value},
        }


def _text(raw: Any, message: str = "enter a value.") -> str:
    if isinstance(raw, bool) or raw is None or not isinstance(raw, str | int | float):
        raise ValueError(message)
    text = str(raw).strip()
    if not text:
        raise ValueError(message)
    if len(text) > 255:
        raise ValueError("keep the value under 255 characters.")
    return text


def _texts(raw: Any) -> list[str]:
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list):
        raise ValueError("pick at least one value.")
    values = list(dict.fromkeys(str(v).strip() for v in raw if isinstance(v, str | int) and str(v).strip()))
    if not values:
        raise ValueError("pick at least one value.")
    if len(values) > MAX_LIST:
        raise ValueError(f"use at most {MAX_LIST} values.")
    return values


def _number(raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise ValueError("enter a number, e.g. 100.")
    try:
        number = Decimal(str(raw).strip().replace(",", "")) if isinstance(raw, str) else Decimal(raw)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("enter a number, e.g. 100.") from None
    if not number.is_finite() or abs(number) > Decimal("1e15"):
        raise ValueError("enter a number, e.g. 100.")
    return int(number) if number == number.to_integral_value() else float(number)


def _whole(raw: Any, what: str, low: int, high: int) -> int:
    try:
        number = _number(raw)
    except ValueError:
        raise ValueError(f"enter {what} as a whole number.") from None
    if number != int(number) or not low <= number <= high:
        raise ValueError(f"enter {what} as a whole number from {low:,} to {high:,}.")
    return int(number)


def _date(raw: Any) -> str:
    try:
        return dt.date.fromisoformat(str(raw).strip()).isoformat()
    except ValueError:
        raise ValueError("enter a date like 2025-03-31.") from None


def _pair(raw: Any, parse: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ValueError(f"enter {what}.")
    return parse(raw[0]), parse(raw[1])


def iter_conditions(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every condition in a (possibly unvalidated) tree, exclusions included."""
    for child in node.get("conditions", []) or []:
        if isinstance(child, Mapping):
            if "conditions" in child:
                yield from iter_conditions(child)
            else:
                yield child
    exclude = node.get("exclude")
    if isinstance(exclude, Mapping):
        yield from iter_conditions(exclude)


def referenced_segments(rules: Mapping[str, Any]) -> set[int]:
    found = set()
    for cond in iter_conditions(rules):
        if cond.get("field") == "segment":
            try:
                found.add(int(str(cond.get("value"))))
            except ValueError:
                continue
    return found


def _path_to(start: int, target: int, segments: Mapping[int, c.SegmentRef]) -> list[int] | None:
    """The chain of segment ids from ``start`` to ``target`` through inclusions, if any."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        current, chain = stack.pop()
        if current == target:
            return chain[:-1]
        if current in seen or current not in segments:
            continue
        seen.add(current)
        for nxt in referenced_segments(segments[current].rules):
            stack.append((nxt, [*chain, nxt]))
    return None


def validate_rules(rules: Any, *, context: c.RuleContext, require_conditions: bool = True) -> Validated:
    """Normalize ``rules`` and list every problem; never raises on bad input."""
    validator = _Validator(context)
    if not isinstance(rules, Mapping):
        return Validated(empty_rules(), [Problem("", "", "The rules are damaged; start again.")])
    root = validator.group(rules, "", [], 1)
    exclude_raw = rules.get("exclude") or {"match": "any", "conditions": []}
    exclude = validator.group(exclude_raw, "exclude", [("exclude", 0)], 1)
    root["exclude"] = exclude
    if require_conditions and not validator.count:
        validator.problems.insert(0, Problem("", "", "Add at least one condition."))
    if validator.count > MAX_CONDITIONS:
        validator.problems.append(Problem("", "", f"Use at most {MAX_CONDITIONS} conditions in one segment."))
    return Validated(root, validator.problems)
