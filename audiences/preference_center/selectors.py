"""The preference center's read: one subscriber's page state in one SQL query.

The page is opened by every user from every push message, so its read is one round
trip: the subscriber's preference fields, every active topic and the subscriber's
explicit choice for it (``LEFT JOIN``; no row means the topic's default), ordered as
``Topic.Meta.ordering``. Saving reads the same state with the subscriber row locked
(``SELECT … FOR UPDATE OF`` the subscriber), which is also the check that it is not
erased, so the write path needs no separate read.

The SQL is written here rather than by the ORM because compiling three querysets and
building model instances cost more than the rest of the page; it is built once from
the models' ``_meta`` and the database's own converters are applied to the values, so
it reads the same on PostgreSQL and SQLite.

Topics are few and rarely change, but they must be current: their columns come with
every read, and the ``Topic`` instances (and their translated names) are memoized by
those values, so an edited or deactivated topic shows at once, with no invalidation.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone, translation

from audiences.models import Subscriber, Topic, TopicPreference

# The subscriber's fields the page shows and the save compares (in this order).
SUBSCRIBER_FIELDS = (
    "id",
    "push_opt_in",
    "frequency_limit",
    "quiet_hours_start",
    "quiet_hours_end",
    "timezone",
    "language",
    "paused_until",
)
# Topic columns not read (deferred on the instances): the page never shows them.
TOPIC_DEFERRED = frozenset({"created_at"})


@dataclass(frozen=True, slots=True)
class TopicChoice:
    topic: Topic  # shared, read-only: memoized by the topic's stored values
    opted_in: bool  # the explicit choice, else the topic's default


@dataclass(frozen=True, slots=True)
class PageState:
    """What the preference center shows and compares against, read in one query."""

    subscriber_id: int
    push_opt_in: bool
    frequency_limit: str
    quiet_hours_start: dt.time | None
    quiet_hours_end: dt.time | None
    timezone: str
    language: str
    paused_until: dt.datetime | None
    topics: tuple[TopicChoice, ...]
    catalog: TopicCatalog

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None and self.paused_until > timezone.now()


@dataclass(eq=False)
class TopicCatalog:
    """The active topics as stored at one moment, with their names per language."""

    topics: tuple[Topic, ...]
    _labels: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def labels(self, language: str) -> tuple[tuple[str, str], ...]:
        """``(name, description)`` of each topic in ``language`` (modeltranslation's fallbacks)."""
        try:
            return self._labels[language]
        except KeyError:
            with translation.override(language):
                labels = tuple((topic.name, topic.description) for topic in self.topics)
            self._labels[language] = labels
            return labels


Converter = Callable[[Any, Any, Any], Any]
Converters = tuple[tuple[int, tuple[Converter, ...], Any], ...]


@dataclass(frozen=True)
class _Query:
    sql: str
    subscriber_converters: Converters
    topic_converters: Converters
    topic_attnames: tuple[str, ...]


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _converters(fields: Sequence[Field[Any, Any]], offset: int) -> Converters:
    """The database's value converters per column (e.g. SQLite's text → aware datetime)."""
    found = []
    for index, model_field in enumerate(fields):
        col = model_field.get_col(model_field.model._meta.db_table)
        converters = connection.ops.get_db_converters(col) + model_field.get_db_converters(connection)  # type: ignore[attr-defined]
        if converters:
            found.append((offset + index, tuple(converters), col))
    return tuple(found)


@functools.cache
def _query(vendor: str, lock: bool) -> _Query:
    del vendor  # the cache key: the SQL and converters are the database's own
    qn = connection.ops.quote_name
    subscriber = [_field(Subscriber, name) for name in SUBSCRIBER_FIELDS]
    # Parsing a timestamp per topic per request is measurable: TOPIC_DEFERRED.
    topic = [f for f in Topic._meta.concrete_fields if f.attname not in TOPIC_DEFERRED]

    def col(alias: str, model: type[Model], name: str) -> str:
        return f"{qn(alias)}.{qn(_field(model, name).column)}"

    columns = ", ".join(
        [f"{qn('s')}.{qn(f.column)}" for f in subscriber]
        + [col("tp", TopicPreference, "opted_in")]
        + [f"{qn('t')}.{qn(f.column)}" for f in topic]
    )
    ordering = ", ".join(col("t", Topic, name) for name in Topic._meta.ordering)  # type: ignore[union-attr]
    sql = (
        f"SELECT {columns} FROM {qn(Subscriber._meta.db_table)} {qn('s')} "  # noqa: S608 — names from _meta
        f"LEFT JOIN {qn(Topic._meta.db_table)} {qn('t')} ON {col('t', Topic, 'is_active')} = %s "
        f"LEFT JOIN {qn(TopicPreference._meta.db_table)} {qn('tp')} "
        f"ON {col('tp', TopicPreference, 'subscriber')} = {col('s', Subscriber, 'id')} "
        f"AND {col('tp', TopicPreference, 'topic')} = {col('t', Topic, 'id')} "
        f"WHERE {col('s', Subscriber, 'id')} = %s AND {col('s', Subscriber, 'erased_at')} IS NULL "
        f"ORDER BY {ordering}"
    )
    if lock and connection.features.has_select_for_update:
        of = f" OF {qn('s')}" if connection.features.has_select_for_update_of else ""
        sql += f" FOR UPDATE{of}"
    return _Query(
        sql=sql,
        subscriber_converters=_converters(subscriber, 0),
        topic_converters=_converters(topic, len(subscriber) + 1),
        topic_attnames=tuple(f.attname for f in topic),
    )


def _convert(row: list[Any], converters: Converters) -> None:
    for index, functions, col in converters:
        value = row[index]
        for function in functions:
            value = function(value, col, connection)
        row[index] = value


@functools.lru_cache(maxsize=32)
def _catalog(topic_rows: tuple[tuple[Any, ...], ...], attnames: tuple[str, ...]) -> TopicCatalog:
    topics = tuple(Topic.from_db(connection.alias, list(attnames), row) for row in topic_rows)
    return TopicCatalog(topics=topics)


def page_state(*, subscriber_id: int, lock: bool = False) -> PageState | None:
    """The page state of a live (not erased) subscriber, or ``None``.

    One query. With ``lock=True`` the subscriber row is locked (``FOR UPDATE``) until
    the end of the caller's transaction: call it inside ``transaction.atomic``.
    """
    query = _query(connection.vendor, lock)
    with connection.cursor() as cursor:
        cursor.execute(query.sql, [True, subscriber_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    first = list(rows[0])
    _convert(first, query.subscriber_converters)
    width = len(SUBSCRIBER_FIELDS) + 1
    topic_rows = []
    explicit = []
    for row in rows:
        if row[width] is None:  # no active topic: one row, NULL topic columns
            continue
        values = list(row)
        _convert(values, query.topic_converters)
        topic_rows.append(tuple(values[width:]))
        explicit.append(row[width - 1])
    catalog = _catalog(tuple(topic_rows), query.topic_attnames)
    return PageState(
        subscriber_id=first[0],
        push_opt_in=bool(first[1]),
        frequency_limit=first[2],
        quiet_hours_start=first[3],
        quiet_hours_end=first[4],
        timezone=first[5],
        language=first[6],
        paused_until=first[7],
        topics=tuple(
            TopicChoice(topic=topic, opted_in=topic.default_opt_in if choice is None else bool(choice))
            for topic, choice in zip(catalog.topics, explicit, strict=True)
        ),
        catalog=catalog,
    )
