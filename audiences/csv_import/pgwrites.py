"""PostgreSQL writes of an import batch, split so that the writer thread does no per-row Python.

The import overlaps Python (parse, validate, plan) with PostgreSQL's work on the
second core — but only if the thread that talks to PostgreSQL never has to queue for
the GIL between statements. So the work is split in two:

* :meth:`PostgresBatchWriter.format` runs in the planning thread and turns a
  :class:`~audiences.csv_import.plan.BatchPlan` into CSV text for five staging
  tables (the ``csv`` module formats rows in C; JSON is serialized here too).
* :meth:`PostgresBatchWriter.write` runs in the writer thread: it ``COPY``-es that
  text into the staging tables and runs **one** statement whose data-modifying CTEs
  upsert the subscribers and insert their topic choices, consent records, devices
  and segment memberships. Subscriber ids never travel back to Python: the new ones
  come from ``RETURNING`` inside the statement, the stored ones ride along in the
  staged rows.

The import's foreign keys are checked as each statement ends (``SET CONSTRAINTS …
IMMEDIATE``) instead of all at commit: the same checks, but done while Python is
still planning the next batch instead of in a serial tail.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from django.db import connection, models

from audiences.csv_import.plan import BatchPlan
from audiences.csv_import.writes import SUBSCRIBER_COLUMNS, _json_scalar, _other_columns
from audiences.models import ConsentRecord, Device, SegmentMember, Subscriber, TopicPreference

_IMPORT_SOURCE = ConsentRecord.Source.IMPORT.value
# Staging tables: name → [(column, model, the model column whose type it takes)].
_Stage = list[tuple[str, type[models.Model], str]]
_SUBSCRIBER_STAGE: _Stage = [("external_id", Subscriber, "external_id")]
_SUBSCRIBER_STAGE += [(column, Subscriber, column) for column in SUBSCRIBER_COLUMNS]
_STAGES: dict[str, _Stage] = {
    "subscriber": _SUBSCRIBER_STAGE,
    "preference": [
        ("subscriber_id", Device, "subscriber_id"),
        ("external_id", Subscriber, "external_id"),
        ("topic_id", TopicPreference, "topic_id"),
        ("opted_in", TopicPreference, "opted_in"),
    ],
    "consent": [
        ("subscriber_id", Device, "subscriber_id"),
        ("external_id", Subscriber, "external_id"),
        ("field", ConsentRecord, "field"),
        ("topic_id", ConsentRecord, "topic_id"),
        ("old_value", ConsentRecord, "old_value"),
        ("new_value", ConsentRecord, "new_value"),
        ("source_detail", ConsentRecord, "source_detail"),
        ("created_at", ConsentRecord, "created_at"),
    ],
    "device": [
        ("subscriber_id", Device, "subscriber_id"),
        ("external_id", Subscriber, "external_id"),
        ("token", Device, "token"),
        ("platform", Device, "platform"),
    ],
    "member": [("subscriber_id", Device, "subscriber_id"), ("external_id", Subscriber, "external_id")],
}
# Text columns are read with FORCE_NOT_NULL: an empty cell is "" there, NULL elsewhere
# (a NULL subscriber_id means "new: take the id from the upsert").
_NULLABLE = {"subscriber_id", "topic_id", "old_value"}


def _not_null(columns: _Stage) -> list[str]:
    return [column for column, _model, _field in columns if column not in _NULLABLE]


def _json_list(value: Any) -> str:
    """``json.dumps(value)``, without its per-call overhead for a list of strings."""
    if type(value) is list:
        try:
            # The same escaping and separators json.dumps uses by default.
            return "[" + ", ".join(map(encode_basestring_ascii, value)) + "]"
        except TypeError:  # not all strings
            pass
    return json.dumps(value)


def _json_object(value: Any) -> str:
    """``json.dumps(value)`` for a dict of str/bool/int values, without its per-call overhead."""
    if type(value) is dict:
        parts = []
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str:
                break
            if kind is str:
                parts.append(f"{encode_basestring_ascii(key)}: {encode_basestring_ascii(item)}")
            elif kind is bool:
                parts.append(f"{encode_basestring_ascii(key)}: {'true' if item else 'false'}")
            elif kind is int:
                parts.append(f"{encode_basestring_ascii(key)}: {int.__repr__(item)}")
            else:
                break
        else:
            return "{" + ", ".join(parts) + "}"
    return json.dumps(value)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _stage(name: str) -> str:
    return _q(f"import_stage_{name}")


def _db_type(model: type[models.Model], column: str) -> str:
    field = next(f for f in model._meta.concrete_fields if f.column == column)
    return str(field.db_type(connection))


class PostgresBatchWriter:
    """Formats batches (planning thread) and writes them (writer thread) on PostgreSQL."""

    def __init__(self, *, now: dt.datetime, actor_id: int | None, segment_id: int | None) -> None:
        self.now = now
        self.actor_id = actor_id
        self.segment_id = segment_id
        self.ready = False
        self._copy_sql = {
            name: f"COPY {_stage(name)} ({', '.join(_q(c) for c, _m, _f in columns)}) FROM STDIN WITH "
            f"(FORMAT csv, FORCE_NOT_NULL ({', '.join(_q(c) for c in _not_null(columns))}))"
            for name, columns in _STAGES.items()
        }
        self._create_sql = [
            f"CREATE TEMP TABLE IF NOT EXISTS {_stage(name)} "
            f"({', '.join(f'{_q(c)} {_db_type(m, f)}' for c, m, f in columns)}) ON COMMIT DROP"
            for name, columns in _STAGES.items()
        ]
        self._truncate_sql = f"TRUNCATE {', '.join(_stage(name) for name in _STAGES)}"
        self._statement, self._params = self._build_statement()

    # -- the statement (built once per import) ---------------------------------------

    def _defaults(
        self, model: type[models.Model], given: Sequence[str]
    ) -> tuple[list[str], list[str], list[Any]]:
        """Columns the import does not set: names, typed placeholders, values."""
        others = _other_columns(model, given, self.now)
        names = [_q(column) for column, _value in others]
        placeholders = [f"%s::{_db_type(model, column)}" for column, _value in others]
        return names, placeholders, [value for _column, value in others]

    def _build_statement(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        sub_given = ("external_id", *SUBSCRIBER_COLUMNS, "updated_at")
        names, values, defaults = self._defaults(Subscriber, sub_given)
        columns = ", ".join([*(_q(c) for c in sub_given), *names])
        select = ", ".join([*(f"s.{_q(c)}" for c in sub_given[:-1]), "%s::timestamptz", *values])
        params += [self.now, *defaults]
        updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in (*SUBSCRIBER_COLUMNS, "updated_at"))
        ids = (
            f"ids AS (INSERT INTO {_q(Subscriber._meta.db_table)} ({columns}) "  # noqa: S608
            f"SELECT {select} FROM {_stage('subscriber')} s ORDER BY s.ctid "
            f"ON CONFLICT ({_q('external_id')}) DO UPDATE SET {updates} "
            f"RETURNING {_q('id')}, {_q('external_id')})"
        )

        def dependent(
            alias: str, stage: str, model: type[models.Model], given: list[tuple[str, str]], tail: str = ""
        ) -> str:
            """INSERT from a staging table, the subscriber id resolved in SQL."""
            names, values, defaults = self._defaults(model, [c for c, _e in given])
            columns = ", ".join([*(_q(c) for c, _e in given), *names])
            select = ", ".join([*(expression for _c, expression in given), *values])
            params.extend(defaults)
            return (
                f"{alias} AS (INSERT INTO {_q(model._meta.db_table)} ({columns}) "  # noqa: S608
                f"SELECT {select} FROM {_stage(stage)} t "
                f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} ORDER BY t.ctid {tail})"
            )

        subscriber = f"COALESCE(t.{_q('subscriber_id')}, ids.{_q('id')})"
        ctes = [ids]
        ctes.append(
            dependent(
                "preferences",
                "preference",
                TopicPreference,
                [("subscriber_id", subscriber), ("topic_id", "t.topic_id"), ("opted_in", "t.opted_in")],
                "ON CONFLICT (subscriber_id, topic_id) DO UPDATE "
                "SET opted_in = excluded.opted_in, updated_at = excluded.updated_at",
            )
        )
        # Placeholders are filled in order: actor_id is the consent INSERT's first one.
        consent_given = [
            ("subscriber_id", subscriber),
            ("field", "t.field"),
            ("topic_id", "t.topic_id"),
            ("old_value", "t.old_value"),
            ("new_value", "t.new_value"),
            ("source", f"'{_IMPORT_SOURCE}'"),
            ("source_detail", "t.source_detail"),
            ("actor_id", f"%s::{_db_type(ConsentRecord, 'actor_id')}"),
            ("created_at", "t.created_at"),
        ]
        names, values, defaults = self._defaults(ConsentRecord, [c for c, _e in consent_given])
        params += [self.actor_id, *defaults]
        ctes.append(
            f"consents AS (INSERT INTO {_q(ConsentRecord._meta.db_table)} "  # noqa: S608
            f"({', '.join([*(_q(c) for c, _e in consent_given), *names])}) "
            f"SELECT {', '.join([*(e for _c, e in consent_given), *values])} FROM {_stage('consent')} t "
            f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} "
            "ORDER BY t.ctid)"
        )
        ctes.append(
            dependent(
                "devices",
                "device",
                Device,
                [("subscriber_id", subscriber), ("token", "t.token"), ("platform", "t.platform")],
                "ON CONFLICT (token) DO NOTHING",
            )
        )
        if self.segment_id is not None:
            params.append(self.segment_id)
            names, values, defaults = self._defaults(SegmentMember, ["segment_id", "subscriber_id"])
            params += defaults
            ctes.append(
                f"members AS (INSERT INTO {_q(SegmentMember._meta.db_table)} "  # noqa: S608
                f"({', '.join([_q('segment_id'), _q('subscriber_id'), *names])}) "
                f"SELECT {', '.join(['%s::bigint', subscriber, *values])} FROM {_stage('member')} t "
                f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} "
                "ON CONFLICT (segment_id, subscriber_id) DO NOTHING)"
            )
        return f"WITH {', '.join(ctes)} SELECT 1", params

    # -- planning thread -------------------------------------------------------------

    def format(self, plan: BatchPlan) -> dict[str, str]:
        """CSV text per staging table for one planned batch (pure Python, no database)."""
        known = plan.existing_ids.get
        now, now_text = self.now, str(self.now)  # most ledger entries are stamped "now"
        out: dict[str, str] = {}

        def table(name: str, rows: Any) -> None:
            buffer = io.StringIO()
            # "\r\n" as the line end makes the writer quote cells holding either character.
            csv.writer(buffer, lineterminator="\r\n").writerows(rows)
            if buffer.tell():
                out[name] = buffer.getvalue()

        table(
            "subscriber",
            ((*row[:8], _json_list(row[8]), _json_object(row[9]), row[10]) for row in plan.upserts),
        )
        table("preference", ((known(e), e, topic, opted) for e, topic, opted in plan.prefs))
        table(
            "consent",
            (
                (
                    known(e),
                    e,
                    field,
                    topic,
                    _json_scalar(old),
                    _json_scalar(new),
                    detail[:255],
                    now_text if at is now else at,
                )
                for e, field, topic, old, new, detail, at in plan.consents
            ),
        )
        table("device", ((known(e), e, token, platform) for e, token, platform in plan.devices))
        if self.segment_id is not None:
            table("member", ((known(e), e) for e in plan.members))
        return out

    # -- writer thread ---------------------------------------------------------------

    def write(self, payload: dict[str, str], *, cursor: Any) -> None:
        """COPY one formatted batch into the staging tables and move it with one statement."""
        if not payload:
            return
        if not self.ready:
            for sql in self._create_sql:
                cursor.execute(sql)
            # The same foreign-key checks, at each statement's end instead of all at
            # commit, so they overlap with the planning of the next batch.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self.ready = True
        else:
            cursor.execute(self._truncate_sql)
        for name, text in payload.items():
            with cursor.copy(self._copy_sql[name]) as copy:
                copy.write(text)
        cursor.execute(self._statement, self._params)

    def finish(self, *, cursor: Any) -> None:
        """Back to Django's deferred foreign keys for the rest of the transaction."""
        if self.ready:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
