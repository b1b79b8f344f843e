"""PostgreSQL writes of an import batch, split so that the writer thread does no per-row Python.

The import overlaps Python (parse, validate, plan) with PostgreSQL's work on the
second core — but only if the thread that talks to PostgreSQL never has to queue for
the GIL between statements. So the work is split in two:

* :meth:`PostgresBatchWriter.format` runs in the planning thread and turns a
  :class:`~audiences.csv_import.plan.BatchPlan` into CSV text for one staging table
  that holds all five kinds of rows, told apart by a ``kind`` column (the ``csv``
  module formats rows in C; JSON is serialized here too).
* :meth:`PostgresBatchWriter.write` runs in the writer thread: it ``COPY``-es that
  text into the staging table and runs **one** statement whose data-modifying CTEs
  upsert the subscribers and insert their topic choices, consent records, devices
  and segment memberships. Subscriber ids never travel back to Python: the new ones
  come from ``RETURNING`` inside the statement, the stored ones ride along in the
  staged rows.

One table rather than one per kind: each batch then costs one ``COPY`` and one
``TRUNCATE`` on the import's only connection instead of five of each (measured on
the 100k-row benchmark: TRUNCATE of five temp tables took 10-25 ms a batch).

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
# Staging rows: name → [(column, model, the model column whose type it takes)]. Every
# kind starts with (kind, subscriber_id, external_id); its own columns follow in a block
# of their own, so that a row is a tuple of the prefix, blanks, its values, blanks.
_Stage = list[tuple[str, type[models.Model], str]]
_PREFIX: _Stage = [("subscriber_id", Device, "subscriber_id"), ("external_id", Subscriber, "external_id")]
_STAGES: dict[str, _Stage] = {
    "subscriber": [(column, Subscriber, column) for column in SUBSCRIBER_COLUMNS],
    "preference": [("pref_topic_id", TopicPreference, "topic_id"), ("opted_in", TopicPreference, "opted_in")],
    "consent": [
        ("field", ConsentRecord, "field"),
        ("consent_topic_id", ConsentRecord, "topic_id"),
        ("old_value", ConsentRecord, "old_value"),
        ("new_value", ConsentRecord, "new_value"),
        ("source_detail", ConsentRecord, "source_detail"),
        ("created_at", ConsentRecord, "created_at"),
    ],
    "device": [("token", Device, "token"), ("platform", Device, "platform")],
    "member": [],
}
_KIND = {name: number for number, name in enumerate(_STAGES, start=1)}
_COLUMNS: _Stage = _PREFIX + [column for columns in _STAGES.values() for column in columns]
# (blanks before, blanks after) each kind's own block.
_PADDING: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_offset = 0
for _name, _own in _STAGES.items():
    _after = len(_COLUMNS) - len(_PREFIX) - _offset - len(_own)
    _PADDING[_name] = (("",) * _offset, ("",) * _after)
    _offset += len(_own)
_TABLE = "import_stage"


def _force_not_null() -> list[str]:
    """Text columns read an empty cell as "" (as Django stores blank text), not NULL.

    Every other column reads an empty cell as NULL: the blanks of other kinds' blocks,
    and a NULL subscriber_id meaning "new: take the id from the upsert".
    """
    text_types = ("varchar", "text", "character varying")
    return [column for column, model, field in _COLUMNS if _db_type(model, field).startswith(text_types)]


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
        self.analyzed = False
        columns = ", ".join(["kind", *(_q(c) for c, _m, _f in _COLUMNS)])
        self._copy_sql = (
            f"COPY {_q(_TABLE)} ({columns}) FROM STDIN WITH "
            f"(FORMAT csv, FORCE_NOT_NULL ({', '.join(_q(c) for c in _force_not_null())}))"
        )
        definitions = ", ".join(["kind smallint", *(f"{_q(c)} {_db_type(m, f)}" for c, m, f in _COLUMNS)])
        self._create_sql = f"CREATE TEMP TABLE IF NOT EXISTS {_q(_TABLE)} ({definitions}) ON COMMIT DROP"
        self._truncate_sql = f"TRUNCATE {_q(_TABLE)}"
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
            f"SELECT {select} FROM {_q(_TABLE)} s WHERE s.kind = {_KIND['subscriber']} ORDER BY s.ctid "
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
                f"SELECT {select} FROM {_q(_TABLE)} t "
                f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} "
                f"WHERE t.kind = {_KIND[stage]} ORDER BY t.ctid {tail})"
            )

        subscriber = f"COALESCE(t.{_q('subscriber_id')}, ids.{_q('id')})"
        ctes = [ids]
        ctes.append(
            dependent(
                "preferences",
                "preference",
                TopicPreference,
                [("subscriber_id", subscriber), ("topic_id", "t.pref_topic_id"), ("opted_in", "t.opted_in")],
                "ON CONFLICT (subscriber_id, topic_id) DO UPDATE "
                "SET opted_in = excluded.opted_in, updated_at = excluded.updated_at",
            )
        )
        # Placeholders are filled in order: actor_id is the consent INSERT's first one.
        consent_given = [
            ("subscriber_id", subscriber),
            ("field", "t.field"),
            ("topic_id", "t.consent_topic_id"),
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
            f"SELECT {', '.join([*(e for _c, e in consent_given), *values])} FROM {_q(_TABLE)} t "
            f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} "
            f"WHERE t.kind = {_KIND['consent']} ORDER BY t.ctid)"
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
                f"SELECT {', '.join(['%s::bigint', subscriber, *values])} FROM {_q(_TABLE)} t "
                f"LEFT JOIN ids ON ids.{_q('external_id')} = t.{_q('external_id')} "
                f"WHERE t.kind = {_KIND['member']} ON CONFLICT (segment_id, subscriber_id) DO NOTHING)"
            )
        return f"WITH {', '.join(ctes)} SELECT 1", params

    # -- planning thread -------------------------------------------------------------

    def format(self, plan: BatchPlan) -> str:
        """CSV text of the staging rows of one planned batch (pure Python, no database)."""
        known = plan.existing_ids.get
        now, now_text = self.now, str(self.now)  # most ledger entries are stamped "now"
        buffer = io.StringIO()
        # "\r\n" as the line end makes the writer quote cells holding either character.
        writerows = csv.writer(buffer, lineterminator="\r\n").writerows
        kind = _KIND["subscriber"]
        before, after = _PADDING["subscriber"]
        writerows(
            (kind, "", row[0], *before, *row[1:8], _json_list(row[8]), _json_object(row[9]), row[10], *after)
            for row in plan.upserts
        )
        kind = _KIND["preference"]
        before, after = _PADDING["preference"]
        writerows((kind, known(e), e, *before, topic, opted, *after) for e, topic, opted in plan.prefs)
        kind = _KIND["consent"]
        before, after = _PADDING["consent"]
        writerows(
            (
                kind,
                known(e),
                e,
                *before,
                field,
                topic,
                _json_scalar(old),
                _json_scalar(new),
                detail[:255],
                now_text if at is now else at,
                *after,
            )
            for e, field, topic, old, new, detail, at in plan.consents
        )
        kind = _KIND["device"]
        before, after = _PADDING["device"]
        writerows(
            (kind, known(e), e, *before, token, platform, *after) for e, token, platform in plan.devices
        )
        if self.segment_id is not None:
            kind = _KIND["member"]
            before, after = _PADDING["member"]
            writerows((kind, known(e), e, *before, *after) for e in plan.members)
        return buffer.getvalue()

    # -- writer thread ---------------------------------------------------------------

    def write(self, payload: str, *, cursor: Any) -> None:
        """COPY one formatted batch into the staging table and move it with one statement."""
        if not payload:
            return
        if not self.ready:
            cursor.execute(self._create_sql)
            # The same foreign-key checks, at each statement's end instead of all at
            # commit, so they overlap with the planning of the next batch.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            self.ready = True
        else:
            cursor.execute(self._truncate_sql)
        with cursor.copy(self._copy_sql) as copy:
            copy.write(payload)
        if not self.analyzed:
            # A temp table has no statistics: without them the planner guesses that
            # "kind = n" matches a handful of rows and joins with nested loops —
            # quadratic in the batch (measured: ten times slower). Once is enough: the
            # share of each kind hardly changes from batch to batch.
            cursor.execute(f"ANALYZE {_q(_TABLE)}")
            self.analyzed = True
        cursor.execute(self._statement, self._params)

    def finish(self, *, cursor: Any) -> None:
        """Back to Django's deferred foreign keys for the rest of the transaction."""
        if self.ready:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
