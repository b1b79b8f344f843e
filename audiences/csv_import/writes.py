"""Set-based writes of one import batch: one INSERT … ON CONFLICT statement per table.

Django's ``bulk_create`` builds a model instance and prepares every value in Python,
which alone costs more than the import's time budget at 15,000 rows/s; these
statements send plain values instead. On PostgreSQL each batch is ``COPY``-ed into a
temporary staging table (dropped at commit) and moved with one ``INSERT … SELECT …
ON CONFLICT``: no per-value placeholder for the driver to parse, no 65,535-parameter
limit. SQLite (3.35+ for
``RETURNING``) gets a multi-row ``VALUES`` list. Columns the importer does not set
take the model's defaults, so a field added to a model later does not break them.
Callers run these inside the import's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models

from audiences.models import ConsentRecord, Device, SegmentMember, Subscriber, TopicPreference

# Importable columns, in the order of the tuples the planner builds (after external_id).
SUBSCRIBER_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "language",
    "timezone",
    "country",
    "city",
    "interests",
    "attributes",
    "push_opt_in",
)
# SQLite allows 32,766 parameters per statement.
_SQLITE_MAX_PARAMS = 30_000


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _other_columns(
    model: type[models.Model], given: Sequence[str], now: dt.datetime
) -> list[tuple[str, Any]]:
    """``(column, value)`` for every concrete column the statement does not set."""
    others: list[tuple[str, Any]] = []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in given:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value: Any = now
        else:
            # A declared default, or "" for a blank text field (what Django itself saves).
            value = field.get_default()
            if value is None and field.null:
                continue
        if value is None:
            raise ImproperlyConfigured(
                f"{model.__name__}.{field.name} needs a value in the importer's INSERT."
            )
        others.append((field.column, field.get_db_prep_save(value, connection)))
    return others


def _insert(
    model: type[models.Model],
    given: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    now: dt.datetime,
    tail: str = "",
    cursor: Any = None,
) -> list[tuple[Any, ...]]:
    """INSERT ``rows`` (values for the ``given`` columns; JSON already serialized).

    ``tail`` is appended (``ON CONFLICT …``, ``RETURNING …``); returned rows are
    collected. Datetimes must be aware; they are adapted per database here. On
    PostgreSQL ``cursor`` may be a raw psycopg cursor of this connection (the
    importer's writer thread); otherwise a cursor of this thread's connection is used.
    """
    if not rows:
        return []
    fields = {field.column: field for field in model._meta.concrete_fields}
    extra = _other_columns(model, given, now)
    names = ", ".join(_q(c) for c in (*given, *(column for column, _value in extra)))
    table = _q(model._meta.db_table)
    if connection.vendor == "postgresql":
        if cursor is not None:
            # The writer thread: ``connection`` here is that thread's own (unused)
            # wrapper; the importer's transaction is the raw cursor's connection.
            return _insert_postgresql(cursor, model, fields, given, rows, extra, names, table, tail)
        if not connection.in_atomic_block:
            raise RuntimeError("The importer writes inside its transaction only.")
        with connection.cursor() as django_cursor:
            return _insert_postgresql(
                django_cursor.cursor, model, fields, given, rows, extra, names, table, tail
            )
    results: list[tuple[Any, ...]] = []
    with connection.cursor() as sqlite_cursor:
        width = len(given) + len(extra)
        row_sql = "(" + ", ".join(["%s"] * width) + ")"
        defaults = [value for _column, value in extra]
        adapt = [
            isinstance(fields[column], models.DateTimeField) for column in given
        ]  # SQLite stores datetimes as text
        size = max(1, _SQLITE_MAX_PARAMS // width)
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            flat: list[Any] = []
            for row in chunk:
                flat.extend(
                    connection.ops.adapt_datetimefield_value(value) if adapt[i] else value
                    for i, value in enumerate(row)
                )
                flat.extend(defaults)
            sqlite_cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([row_sql] * len(chunk))} {tail}",  # noqa: S608
                flat,
            )
            if "RETURNING" in tail:
                results.extend(sqlite_cursor.fetchall())
    return results


_SCALARS = {True: "true", False: "false"}


def _json_scalar(value: Any) -> str | None:
    """JSON for a ledger value; the common booleans without a json.dumps call each."""
    if value is None:
        return None
    if value is True or value is False:
        return _SCALARS[value]
    return json.dumps(value)


def _insert_postgresql(
    cursor: Any,
    model: type[models.Model],
    fields: dict[str, models.Field[Any, Any]],
    given: Sequence[str],
    rows: Sequence[Sequence[Any]],
    extra: list[tuple[str, Any]],
    names: str,
    table: str,
    tail: str,
) -> list[tuple[Any, ...]]:
    # COPY the batch into a per-transaction staging table (psycopg formats the rows in
    # C), then one INSERT … SELECT moves it: no per-value placeholders.
    stage = _q(f"import_stage_{model._meta.db_table}")
    types = [fields[column].db_type(connection) for column in given]
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
        f"({', '.join(f'c{i} {kind}' for i, kind in enumerate(types))}) ON COMMIT DROP"
    )
    cursor.execute(f"TRUNCATE {stage}")
    with cursor.copy(f"COPY {stage} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    select = [f"c{i}" for i in range(len(given))]
    select += [f"%s::{fields[column].db_type(connection)}" for column, _value in extra]
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {', '.join(select)} FROM {stage} {tail}",  # noqa: S608
        [value for _column, value in extra],
    )
    return list(cursor.fetchall()) if "RETURNING" in tail else []


def upsert_subscribers(
    rows: Sequence[tuple[Any, ...]], *, now: dt.datetime, cursor: Any = None
) -> dict[str, int]:
    """Insert or update subscribers from ``(external_id, *SUBSCRIBER_COLUMNS)`` tuples.

    The tuples carry the full merged values (blank cells were already filled from
    the stored row), so the update simply sets them. Behaviour aggregates and
    preferences other than the push opt-in are never touched. Returns
    ``external_id → id`` for every row written.
    """
    columns = ("external_id", *SUBSCRIBER_COLUMNS, "updated_at")
    values = [(*row[:8], json.dumps(row[8]), json.dumps(row[9]), row[10], now) for row in rows]
    updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in (*SUBSCRIBER_COLUMNS, "updated_at"))
    returned = _insert(
        Subscriber,
        columns,
        values,
        now=now,
        cursor=cursor,
        tail=f"ON CONFLICT ({_q('external_id')}) DO UPDATE SET {updates} "
        f"RETURNING {_q('id')}, {_q('external_id')}",
    )
    return {external_id: pk for pk, external_id in returned}


def upsert_topic_preferences(
    rows: Sequence[tuple[int, int, bool]], *, now: dt.datetime, cursor: Any = None
) -> None:
    """Store explicit topic choices ``(subscriber_id, topic_id, opted_in)``."""
    _insert(
        TopicPreference,
        ("subscriber_id", "topic_id", "opted_in"),
        rows,
        now=now,
        cursor=cursor,
        tail="ON CONFLICT (subscriber_id, topic_id) DO UPDATE "
        "SET opted_in = excluded.opted_in, updated_at = excluded.updated_at",
    )


def insert_consent_records(
    rows: Sequence[tuple[int, str, int | None, Any, Any, str, dt.datetime]],
    *,
    actor_id: int | None,
    now: dt.datetime,
    cursor: Any = None,
) -> None:
    """Append ledger rows ``(subscriber_id, field, topic_id, old, new, source_detail, at)``.

    ``source`` is always ``import``; ``at`` is the consent time given in the file
    (when the person consented), or the import time when the file gives none.
    """
    values = [
        (
            subscriber_id,
            field,
            topic_id,
            _json_scalar(old),
            _json_scalar(new),
            ConsentRecord.Source.IMPORT.value,
            detail[:255],
            actor_id,
            moment,
        )
        for subscriber_id, field, topic_id, old, new, detail, moment in rows
    ]
    columns = ("subscriber_id", "field", "topic_id", "old_value", "new_value", "source", "source_detail")
    _insert(ConsentRecord, (*columns, "actor_id", "created_at"), values, now=now, cursor=cursor)


def insert_devices(rows: Sequence[tuple[int, str, str]], *, now: dt.datetime, cursor: Any = None) -> None:
    """Register devices ``(subscriber_id, token, platform)``; a token that appeared
    meanwhile (the API registered it) keeps its owner."""
    _insert(
        Device,
        ("subscriber_id", "token", "platform"),
        rows,
        now=now,
        cursor=cursor,
        tail="ON CONFLICT (token) DO NOTHING",
    )


def add_segment_members(
    segment_id: int, subscriber_ids: Sequence[int], *, now: dt.datetime, cursor: Any = None
) -> None:
    """Add members to the import's static segment (idempotent, like ``segment_add_members``,
    but on the importer's cursor so that it can run in the writer thread)."""
    _insert(
        SegmentMember,
        ("segment_id", "subscriber_id"),
        [(segment_id, subscriber_id) for subscriber_id in subscriber_ids],
        now=now,
        cursor=cursor,
        tail="ON CONFLICT (segment_id, subscriber_id) DO NOTHING",
    )
