"""Compare one batch of parsed rows with the database and plan its writes.

A batch costs at most three reads (subscribers, their topic choices, device tokens),
whatever its size; the comparison itself is per row in memory. The plan is what the
dry run counts and what the real run writes, so both agree by construction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, models
from django.db.models import QuerySet

from audiences.csv_import.summary import SAMPLES_PER_KIND
from audiences.csv_import.validation import ParsedRow, RowError
from audiences.csv_import.writes import SUBSCRIBER_COLUMNS
from audiences.models import Device, Subscriber, TopicPreference

_M = TypeVar("_M", bound=models.Model)
# What a new subscriber's push opt-in is when the file says nothing: the model's
# default, as when the admin or the API creates one.
_NEW_PUSH_OPT_IN = True


def _matching(queryset: QuerySet[_M], column: str, values: list[Any]) -> QuerySet[_M]:
    """``queryset`` rows whose ``column`` is one of ``values``.

    On PostgreSQL as ``= ANY(…)`` of one parameter: an ``IN`` list of thousands of
    placeholders costs the driver more to parse than the query takes. The parameter
    is the values as one JSON string (serialized in C) rather than a Python list,
    which psycopg would quote element by element in Python on every batch.
    """
    if connection.vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": values})
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    field = next(f for f in queryset.model._meta.concrete_fields if f.column == column)
    # Cast the (text) elements to the column's own type, so the comparison uses the index.
    where = (
        f"{table}.{connection.ops.quote_name(column)} = "
        f"ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))::{field.db_type(connection)}[])"
    )
    return queryset.extra(where=[where], params=[json.dumps(values)])  # noqa: S610


@dataclass(frozen=True)
class TopicInfo:
    id: int
    default_opt_in: bool


@dataclass
class BatchPlan:
    """What one batch will change. Rows are keyed by external_id until they have ids."""

    upserts: list[tuple[Any, ...]] = field(default_factory=list)
    existing_ids: dict[str, int] = field(default_factory=dict)
    # (external_id, field, topic_id, old, new, source_detail, at)
    consents: list[tuple[str, str, int | None, Any, Any, str, dt.datetime]] = field(default_factory=list)
    prefs: list[tuple[str, int, bool]] = field(default_factory=list)
    devices: list[tuple[str, str, str]] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # stored subscribers this batch changes
    # Valid rows per outcome (created/updated/unchanged), and the first few as samples.
    counts: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    samples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"created": [], "updated": [], "unchanged": []}
    )

    def outcome(self, kind: str, sample: Callable[[], dict[str, Any]]) -> None:
        self.counts[kind] += 1
        if len(self.samples[kind]) < SAMPLES_PER_KIND:
            self.samples[kind].append(sample())

    errors: list[RowError] = field(default_factory=list)


def _created_sample(row: ParsedRow) -> dict[str, Any]:
    shown = {**row.fields, **row.attributes}
    shown.update({name: opted for name, (opted, _source, _moment) in row.consents.items()})
    return {"line": row.line, "external_id": row.external_id, "values": shown}


class Planner:
    def __init__(
        self,
        *,
        file_name: str,
        topics: dict[str, TopicInfo],
        now: dt.datetime,
        lock: bool = False,
        device_column: str = "device_token",
        key_column: str = "external_id",
        check_erased: bool = False,
    ) -> None:
        self.file_name = file_name
        self.language = settings.LANGUAGE_CODE
        self.device_column = device_column
        self.key_column = key_column
        self.check_erased = check_erased
        self.topics = topics
        self.now = now
        # The real run locks the rows it compares (SELECT … FOR UPDATE) so that a
        # concurrent change is not overwritten with values merged from a stale copy.
        self.lock = lock

    def _detail(self, source: str) -> str:
        return f"{self.file_name}: {source}" if source else self.file_name

    def _stored(self, column: str, values: list[Any], *, lock: bool) -> dict[str, tuple[Any, ...]]:
        queryset = _matching(Subscriber.objects.all(), column, values)
        if lock:
            queryset = queryset.select_for_update()
        return {
            values[0]: values[1:]
            for values in queryset.values_list("external_id", "id", *SUBSCRIBER_COLUMNS).order_by()
        }

    def plan(self, rows: Sequence[ParsedRow]) -> BatchPlan:
        stored = self._stored("external_id", [row.external_id for row in rows], lock=False)
        erased: set[str] = set()
        if self.check_erased:
            # Imported here: the services package imports this engine.
            from audiences.services.privacy import external_ids_erased

            erased = external_ids_erased(
                external_ids=[r.external_id for r in rows if r.external_id not in stored]
            )
        refused: list[RowError] = []
        if erased:
            refused = [
                RowError(
                    row.line,
                    self.key_column,
                    f"“{row.external_id}” belongs to a person who erased their data; NotifyHub does not "
                    "store them again. Remove this row.",
                )
                for row in rows
                if row.external_id in erased
            ]
            rows = [row for row in rows if row.external_id not in erased]
        plan = self._plan(rows, stored)
        if self.lock and plan.touched:
            # Lock only the rows this batch changes (a re-import locks nothing), then
            # make sure they are still what the plan was made from; if a concurrent
            # change slipped in between, plan again from the locked values.
            ids = [stored[external_id][0] for external_id in plan.touched]
            fresh = self._stored("id", ids, lock=True)
            if any(fresh.get(external_id) != stored[external_id] for external_id in plan.touched):
                plan = self._plan(rows, {**stored, **fresh})
        plan.errors.extend(refused)
        return plan

    def _plan(self, rows: Sequence[ParsedRow], stored: dict[str, tuple[Any, ...]]) -> BatchPlan:
        plan = BatchPlan()
        plan.existing_ids = {external_id: values[0] for external_id, values in stored.items()}
        prefs: dict[tuple[int, int], bool] = {}
        # Only stored subscribers can have choices: a batch of new ones needs no query.
        if (
            self.topics
            and plan.existing_ids
            and any(len(row.consents) > ("push_opt_in" in row.consents) for row in rows)
        ):
            chosen = _matching(
                TopicPreference.objects.all(), "subscriber_id", list(plan.existing_ids.values())
            )
            prefs = {
                (sid, tid): opted_in
                for sid, tid, opted_in in chosen.filter(
                    topic_id__in=[info.id for info in self.topics.values()]
                ).values_list("subscriber_id", "topic_id", "opted_in")
            }
        tokens: dict[str, int] = {}
        device_rows = [row.device[0] for row in rows if row.device]
        if device_rows:
            tokens = dict(
                _matching(Device.objects.all(), "token", device_rows).values_list("token", "subscriber_id")
            )
        for row in rows:
            values = stored.get(row.external_id)
            if values is None:
                self._plan_new(plan, row, tokens)
            else:
                self._plan_existing(plan, row, values, prefs, tokens)
        return plan

    def _token_taken(
        self, plan: BatchPlan, row: ParsedRow, tokens: dict[str, int], owner: int | None
    ) -> bool:
        if row.device is None or row.device[0] not in tokens or tokens[row.device[0]] == owner:
            return False
        # Decision: an import never moves a token. The client API registers tokens as
        # apps report them, so a token on another subscriber is newer than this file.
        plan.errors.append(
            RowError(
                row.line,
                self.device_column,
                f"The device token …{row.device[0][-8:]} is already registered to another subscriber. "
                "Apps move tokens themselves through the API; remove the token from this row.",
            )
        )
        return True

    def _plan_new(self, plan: BatchPlan, row: ParsedRow, tokens: dict[str, int]) -> None:
        if self._token_taken(plan, row, tokens, None):
            return
        eid = row.external_id
        push = row.consents.get("push_opt_in")
        get = row.fields.get
        # Built field by field, in SUBSCRIBER_COLUMNS order: this runs once per new row.
        plan.upserts.append(
            (
                eid,
                get("email", ""),
                get("first_name", ""),
                get("last_name", ""),
                get("language", self.language),
                get("timezone", "UTC"),
                get("country", ""),
                get("city", ""),
                get("interests", []),
                row.attributes,
                push[0] if push is not None else _NEW_PUSH_OPT_IN,
            )
        )
        # The first ledger entry of every new subscriber, as the admin and API write it.
        opted, source, moment = push if push is not None else (True, "", None)
        plan.consents.append(
            (eid, "push_opt_in", None, None, opted, self._detail(source), moment or self.now)
        )
        for slug, (opted_in, source, moment) in row.consents.items():
            if slug == "push_opt_in":
                continue
            topic = self.topics[slug]
            plan.prefs.append((eid, topic.id, opted_in))
            plan.consents.append(
                (
                    eid,
                    "topic",
                    topic.id,
                    topic.default_opt_in,
                    opted_in,
                    self._detail(source),
                    moment or self.now,
                )
            )
        if row.device is not None:
            plan.devices.append((eid, *row.device))
        plan.members.append(eid)
        plan.outcome("created", lambda: _created_sample(row))

    def _plan_existing(
        self,
        plan: BatchPlan,
        row: ParsedRow,
        values: tuple[Any, ...],
        prefs: dict[tuple[int, int], bool],
        tokens: dict[str, int],
    ) -> None:
        pk = values[0]
        if self._token_taken(plan, row, tokens, pk):
            return
        eid = row.external_id
        current = dict(zip(SUBSCRIBER_COLUMNS, values[1:], strict=True))
        merged = dict(current)
        changes: list[tuple[str, Any, Any]] = []
        for name, value in row.fields.items():
            if current[name] != value:
                merged[name] = value
                changes.append((name, current[name], value))
        if row.attributes:
            attributes = {**(current["attributes"] or {}), **row.attributes}
            if attributes != current["attributes"]:
                merged["attributes"] = attributes
                for key, value in row.attributes.items():
                    old = (current["attributes"] or {}).get(key)
                    if old != value:
                        changes.append((key, old, value))
        push = row.consents.get("push_opt_in")
        if push is not None and push[0] != current["push_opt_in"]:
            merged["push_opt_in"] = push[0]
            changes.append(("push_opt_in", current["push_opt_in"], push[0]))
            plan.consents.append(
                (
                    eid,
                    "push_opt_in",
                    None,
                    current["push_opt_in"],
                    push[0],
                    self._detail(push[1]),
                    push[2] or self.now,
                )
            )
        if changes:
            plan.upserts.append((eid, *(merged[c] for c in SUBSCRIBER_COLUMNS)))
        for slug, (opted_in, source, moment) in row.consents.items():
            if slug == "push_opt_in":
                continue
            topic = self.topics[slug]
            explicit = prefs.get((pk, topic.id))
            old = topic.default_opt_in if explicit is None else explicit
            if explicit is None or explicit != opted_in:
                # Unlike a click in the preference center, an imported choice comes with
                # evidence (source, time), so it is recorded even when it only makes the
                # topic's default explicit. Equal explicit choices write nothing (re-import).
                plan.prefs.append((eid, topic.id, opted_in))
                changes.append((f"topic:{slug}", old, opted_in))
                plan.consents.append(
                    (eid, "topic", topic.id, old, opted_in, self._detail(source), moment or self.now)
                )
        if row.device is not None and row.device[0] not in tokens:
            plan.devices.append((eid, *row.device))
            changes.append(("device", None, f"{row.device[1]} …{row.device[0][-8:]}"))
        plan.members.append(eid)
        if changes:
            plan.touched.append(eid)
            plan.outcome("updated", lambda: {"line": row.line, "external_id": eid, "changes": changes})
        else:
            plan.outcome("unchanged", lambda: {"line": row.line, "external_id": eid})
