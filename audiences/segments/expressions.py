"""Portable SQL for JSON values: typed attribute reads and "array contains".

Django's JSONField lookups differ by database (``contains`` is not supported on
SQLite, and ``->`` comparisons on PostgreSQL compare by JSON type), so the segment
compiler uses these expressions, each with explicit PostgreSQL and SQLite SQL.

Every expression yields SQL NULL when the stored value does not have the expected
JSON type, so a number condition never matches a string and nothing raises a cast
error in the middle of a count.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, CharField, Expression, F, Field, FloatField, Func
from django.db.models.sql.compiler import SQLCompiler

# The kinds of value a JSON key can be read as.
TEXT, NUMBER, DATE, BOOLEAN = "text", "number", "date", "boolean"
_OUTPUT: dict[str, Field[Any, Any]] = {
    TEXT: CharField(),
    NUMBER: FloatField(),
    DATE: CharField(),
    BOOLEAN: CharField(),
}


def _sqlite_path(key: str) -> str:
    # A quoted member name, so keys with dots or spaces address one member.
    return "$." + json.dumps(key)


class JsonValue(Func):
    """``column[key]`` read as text, number, date (``YYYY-MM-DD``) or boolean (``'true'/'false'``)."""

    def __init__(self, column: str, key: str, kind: str) -> None:
        if kind not in _OUTPUT:
            raise ValueError(f"unknown JSON value kind {kind!r}")
        self.key, self.kind = key, kind
        super().__init__(F(column), output_field=_OUTPUT[kind])

    def _column_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return sql, list(params)

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, list[Any]]:
        raise NotImplementedError(
            f"JSON segment conditions support PostgreSQL and SQLite, not {connection.vendor}"
        )

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        col, params = self._column_sql(compiler, connection)
        node = f"({col} -> %s)"
        text = f"({col} ->> %s)"
        typeof = f"jsonb_typeof({node})"
        if self.kind == TEXT:
            sql = f"CASE WHEN {typeof} IN ('string', 'number') THEN {text} END"
            return sql, [*params, self.key, *params, self.key]
        if self.kind == NUMBER:
            sql = f"CASE WHEN {typeof} = 'number' THEN ({text})::double precision END"
            return sql, [*params, self.key, *params, self.key]
        if self.kind == BOOLEAN:
            sql = f"CASE WHEN {typeof} = 'boolean' THEN {text} END"
            return sql, [*params, self.key, *params, self.key]
        # DATE: ISO strings ("2024-05-01" or a full timestamp) compared by their day.
        sql = (
            f"CASE WHEN {typeof} = 'string' AND {text} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' "
            f"THEN substr({text}, 1, 10) END"
        )
        return sql, [*params, self.key, *params, self.key, *params, self.key]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        col, params = self._column_sql(compiler, connection)
        path = _sqlite_path(self.key)
        typeof = f"json_type({col}, %s)"
        value = f"json_extract({col}, %s)"
        both = [*params, path, *params, path]
        if self.kind == TEXT:
            return f"CASE WHEN {typeof} IN ('text', 'integer', 'real') THEN CAST({value} AS TEXT) END", both
        if self.kind == NUMBER:
            return f"CASE WHEN {typeof} IN ('integer', 'real') THEN {value} END", both
        if self.kind == BOOLEAN:
            return f"CASE {typeof} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END", [*params, path]
        sql = (
            f"CASE WHEN {typeof} = 'text' AND {value} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' "
            f"THEN substr({value}, 1, 10) END"
        )
        return sql, [*params, path, *params, path, *params, path]


class JsonArrayContains(Func):
    """True when the JSON array in ``column`` has ``value`` as an element (never NULL).

    PostgreSQL: ``column @> '["value"]'`` (can use a GIN index). SQLite has no
    containment operator, so it scans the (short) array with ``json_each``.
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, column: str | Expression, value: str) -> None:
        self.value = value
        super().__init__(F(column) if isinstance(column, str) else column)

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, list[Any]]:
        raise NotImplementedError(f"list conditions support PostgreSQL and SQLite, not {connection.vendor}")

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        col, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE({col} @> %s::jsonb, false)", [*params, json.dumps([self.value])]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        col, params = compiler.compile(self.source_expressions[0])
        # {col} is the compiled column reference, never user input (the value is a parameter).
        sql = (
            f"EXISTS (SELECT 1 FROM json_each(CASE WHEN json_type({col}) = 'array' THEN {col} "  # noqa: S608
            "ELSE '[]' END) AS element WHERE element.value = %s)"
        )
        return sql, [*params, *params, self.value]
