"""Event ingestion: batches of behaviour events, idempotent, aggregates kept current.

Event names with a meaning for the behaviour aggregates on Subscriber:

- every event moves ``last_seen_at`` forward to its ``occurred_at``;
- ``purchase`` adds one to ``purchase_count``, its ``properties.amount`` (a
  non-negative number in the shop's single reporting currency, rounded to cents;
  ``properties.currency`` is stored but not converted) to ``total_spent``, and moves
  ``last_purchase_at`` forward;
- ``session_start`` adds one to ``sessions_30d`` when it happened in the last 30
  days; :func:`subscribers_recompute_sessions_30d` (hourly, celery-beat) slides the
  window for everyone;
- ``push_opened`` / ``push_clicked`` are delivery receipts (``properties.delivery_id``)
  recorded by :func:`event_track_receipt`; the delivery ledger (issue #5) consumes
  them to set a delivery's opened/clicked times.

A batch is one transaction of a bounded number of queries whatever its size: lock
the named subscribers, ``INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING``
the events, then one ``UPDATE … FROM (VALUES …)`` for the aggregates of the events
that were really inserted — a resent event is accepted and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audiences.models import Event, Subscriber
from notifyhub.exceptions import ApplicationError

PURCHASE_EVENT = "purchase"
SESSION_EVENT = "session_start"
PUSH_OPENED_EVENT = "push_opened"
PUSH_CLICKED_EVENT = "push_clicked"
AMOUNT_PROPERTY = "amount"
DELIVERY_ID_PROPERTY = "delivery_id"
SESSION_WINDOW = dt.timedelta(days=30)
# Client clocks drift; an event "from the future" beyond this is a bug in the app.
FUTURE_TOLERANCE = dt.timedelta(hours=1)
EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
# Keys NotifyHub derives itself (receipts) live under this prefix; clients may not use it.
RESERVED_KEY_PREFIX = "nh:"
MAX_AMOUNT = Decimal("999999999999.99")
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, as the API reports it (``events[3].occurred_at``)."""

    field: str
    message: str


class FieldValidationError(ApplicationError):
    """Input refused as a whole; ``errors`` names every bad field and what to do.

    The API answers it with 400 and the list; nothing was written.
    """

    def __init__(self, errors: list[FieldError], message: str) -> None:
        super().__init__(message, extra={"errors": errors})
        self.errors = errors


class EventBatchError(FieldValidationError):
    """The batch was refused as a whole; ``errors`` says which item and field, and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        count = len(errors)
        super().__init__(
            errors,
            f"{count} problem{'s' if count != 1 else ''} in the batch; nothing was saved. "
            "Fix the fields listed and send the batch again.",
        )


@dataclass(frozen=True, kw_only=True)
class EventInput:
    external_id: str
    name: str
    occurred_at: dt.datetime
    idempotency_key: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackResult:
    received: int
    recorded: int
    duplicates: int


@dataclass
class _Delta:
    seen: dt.datetime
    purchases: int = 0
    spent: Decimal = Decimal(0)
    last_purchase: dt.datetime | None = None
    sessions: int = 0


def parse_amount(value: Any) -> Decimal | None:
    """A purchase amount as Decimal cents, or None when it is not a usable number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        return None
    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


def _validate(events: Sequence[EventInput], now: dt.datetime, *, allow_reserved: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    limit = settings.NOTIFYHUB_API_EVENTS_PER_BATCH
    if len(events) > limit:
        return [FieldError("events", f"Send at most {limit} events per request; split the batch.")]
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not EVENT_NAME_RE.match(event.name):
            errors.append(
                FieldError(
                    f"{where}.name",
                    "Use 1 to 100 letters, digits, '_', '.', ':' or '-', starting with a letter or "
                    "digit, e.g. 'purchase' or 'level_completed'.",
                )
            )
        key = event.idempotency_key
        if not key or len(key) > 128:
            errors.append(
                FieldError(f"{where}.idempotency_key", "Give each event a unique key of 1 to 128 characters.")
            )
        elif key.startswith(RESERVED_KEY_PREFIX) and not allow_reserved:
            errors.append(
                FieldError(
                    f"{where}.idempotency_key", f"Keys starting with {RESERVED_KEY_PREFIX!r} are reserved."
                )
            )
        if timezone.is_naive(event.occurred_at):
            errors.append(
                FieldError(
                    f"{where}.occurred_at",
                    "Include a time zone offset, e.g. 2025-05-01T12:00:00Z or +02:00.",
                )
            )
        elif event.occurred_at > now + FUTURE_TOLERANCE:
            errors.append(
                FieldError(
                    f"{where}.occurred_at",
                    "This time is in the future; send when the event happened (check the device clock).",
                )
            )
        if event.name == PURCHASE_EVENT and parse_amount(event.properties.get(AMOUNT_PROPERTY)) is None:
            errors.append(
                FieldError(
                    f"{where}.properties.{AMOUNT_PROPERTY}",
                    "A purchase needs its amount as a non-negative number, e.g. 19.99.",
                )
            )
    return errors


def _concrete_field(name: str) -> models.Field[Any, Any]:
    field = Event._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column  # concrete columns only
    return field


def _insert_events(rows: list[tuple[int, EventInput]], now: dt.datetime) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the keys that were really new.

    Raw SQL because Django's ``bulk_create(ignore_conflicts=True)`` cannot say which
    rows it inserted; PostgreSQL and SQLite (≥ 3.35) both speak this statement. Values
    are prepared by the model fields, so each backend gets its own representations.
    """
    names = ("subscriber", "name", "properties", "occurred_at", "received_at", "idempotency_key")
    fields = {name: _concrete_field(name) for name in names}
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields.values())
    prep = fields
    params: list[Any] = []
    for subscriber_id, event in rows:
        params += [
            subscriber_id,
            event.name,
            prep["properties"].get_db_prep_value(event.properties, connection),
            prep["occurred_at"].get_db_prep_value(event.occurred_at, connection),
            prep["received_at"].get_db_prep_value(now, connection),
            event.idempotency_key,
        ]
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    key_column = quote(fields["idempotency_key"].column)
    sql = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}) VALUES {placeholders} "  # noqa: S608
        f"ON CONFLICT ({key_column}) DO NOTHING RETURNING {key_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _apply_deltas(deltas: dict[int, _Delta]) -> None:
    """One UPDATE … FROM (VALUES …): relative increments, so concurrent batches add up."""
    if connection.vendor == "postgresql":
        row = "(%s::bigint, %s::timestamptz, %s::integer, %s::numeric, %s::timestamptz, %s::integer)"
    elif connection.vendor == "sqlite":
        row = "(%s, %s, %s, %s, %s, %s)"
    else:  # pragma: no cover - NotifyHub runs on PostgreSQL and SQLite only
        raise NotImplementedError(connection.vendor)
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = []
    for subscriber_id, d in deltas.items():
        params += [
            subscriber_id,
            adapt(d.seen),
            d.purchases,
            connection.ops.adapt_decimalfield_value(d.spent, 14, 2),
            adapt(d.last_purchase) if d.last_purchase is not None else None,
            d.sessions,
        ]
    table = connection.ops.quote_name(Subscriber._meta.db_table)
    values = ", ".join([row] * len(deltas))
    sql = f"""
        WITH v (id, seen, purchases, spent, last_purchase, sessions) AS (VALUES {values})
        UPDATE {table} AS s SET
            last_seen_at = CASE WHEN s.last_seen_at IS NULL OR v.seen > s.last_seen_at
                           THEN v.seen ELSE s.last_seen_at END,
            purchase_count = s.purchase_count + v.purchases,
            total_spent = s.total_spent + v.spent,
            last_purchase_at = CASE WHEN v.last_purchase IS NOT NULL
                                    AND (s.last_purchase_at IS NULL OR v.last_purchase > s.last_purchase_at)
                               THEN v.last_purchase ELSE s.last_purchase_at END,
            sessions_30d = s.sessions_30d + v.sessions
        FROM v WHERE s.id = v.id
    """  # noqa: S608 - only placeholders and quoted names are interpolated
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def event_track_batch(*, events: Sequence[EventInput], now: dt.datetime | None = None) -> TrackResult:
    """Record a batch of events and update the subscribers' behaviour aggregates.

    Transaction: all or nothing — any invalid item refuses the whole batch with an
    EventBatchError naming every bad item and field, and nothing is written. Queries:
    at most three, whatever the batch size (lock subscribers, insert, update).

    Idempotency: an event whose ``idempotency_key`` is already stored (or repeats an
    earlier item of the same batch) is accepted and ignored; only newly inserted
    events move the aggregates, so resending a batch changes nothing.

    Concurrency: the subscribers are locked in id order (``FOR NO KEY UPDATE``, which
    does not conflict with the foreign-key checks of concurrent inserts) before
    anything is written, so concurrent batches on the same subscribers serialize
    instead of deadlocking.
    """
    return _track(events, now or timezone.now(), allow_reserved=False)


@transaction.atomic
def _track(events: Sequence[EventInput], now: dt.datetime, *, allow_reserved: bool) -> TrackResult:
    errors = _validate(events, now, allow_reserved=allow_reserved)
    if errors:
        raise EventBatchError(errors)
    if not events:
        return TrackResult(received=0, recorded=0, duplicates=0)

    external_ids = {e.external_id for e in events}
    known = dict(
        Subscriber.objects.select_for_update(no_key=True)
        .filter(external_id__in=external_ids)
        .order_by("pk")
        .values_list("external_id", "pk")
    )
    missing = [
        FieldError(
            f"events[{i}].external_id",
            f"No subscriber has the external id {e.external_id!r}; identify it first "
            "(POST /api/v1/identify), then send its events.",
        )
        for i, e in enumerate(events)
        if e.external_id not in known
    ]
    if missing:
        raise EventBatchError(missing)

    unique: dict[str, EventInput] = {}
    for event in events:
        unique.setdefault(event.idempotency_key, event)
    inserted = _insert_events([(known[e.external_id], e) for e in unique.values()], now)

    session_floor = now - SESSION_WINDOW
    deltas: dict[int, _Delta] = {}
    for key in inserted:
        event = unique[key]
        delta = deltas.setdefault(known[event.external_id], _Delta(seen=event.occurred_at))
        delta.seen = max(delta.seen, event.occurred_at)
        if event.name == PURCHASE_EVENT:
            delta.purchases += 1
            delta.spent += parse_amount(event.properties.get(AMOUNT_PROPERTY)) or Decimal(0)
            if delta.last_purchase is None or event.occurred_at > delta.last_purchase:
                delta.last_purchase = event.occurred_at
        elif event.name == SESSION_EVENT and event.occurred_at >= session_floor:
            delta.sessions += 1
    if deltas:
        _apply_deltas(deltas)
    return TrackResult(received=len(events), recorded=len(inserted), duplicates=len(events) - len(inserted))


def event_track_receipt(
    *,
    delivery_id: int,
    kind: str,
    external_id: str,
    occurred_at: dt.datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> TrackResult:
    """Record that a delivery was opened or clicked, as a ``push_opened``/``push_clicked`` event.

    Idempotent per delivery and kind: the key is ``nh:receipt:<kind>:<delivery_id>``,
    so the first report wins and repeats are ignored (the ledger keeps one opened and
    one clicked time per delivery). Same transaction contract as event_track_batch.
    """
    names = {"opened": PUSH_OPENED_EVENT, "clicked": PUSH_CLICKED_EVENT}
    if kind not in names:
        raise EventBatchError([FieldError("kind", "Use 'opened' or 'clicked'.")])
    event = EventInput(
        external_id=external_id,
        name=names[kind],
        occurred_at=occurred_at or timezone.now(),
        idempotency_key=f"{RESERVED_KEY_PREFIX}receipt:{kind}:{delivery_id}",
        properties={**(properties or {}), DELIVERY_ID_PROPERTY: delivery_id},
    )
    try:
        return _track([event], timezone.now(), allow_reserved=True)
    except EventBatchError as exc:
        # One event, not a batch: name the fields without the "events[0]." prefix.
        raise EventBatchError(
            [FieldError(e.field.removeprefix("events[0]."), e.message) for e in exc.errors]
        ) from None


def subscribers_recompute_sessions_30d(*, now: dt.datetime | None = None) -> int:
    """Recount ``sessions_30d`` from the events table so the 30-day window slides.

    Set-based: one UPDATE over the subscribers whose count can differ — those with a
    non-zero count (sessions age out) and those with a session in the window — and
    only where the stored value is wrong. Idempotent: a second run changes nothing.
    A batch ingested while this runs may be overwritten by the older count; the next
    run corrects it.
    """
    now = now or timezone.now()
    floor = now - SESSION_WINDOW
    recent = (
        Event.objects.filter(subscriber=OuterRef("pk"), name=SESSION_EVENT, occurred_at__gte=floor)
        .order_by()
        .values("subscriber")
        .annotate(n=Count("pk"))
        .values("n")
    )
    with_sessions = Event.objects.filter(name=SESSION_EVENT, occurred_at__gte=floor).values("subscriber_id")
    return (
        Subscriber.objects.filter(Q(sessions_30d__gt=0) | Q(pk__in=with_sessions))
        .annotate(actual=Coalesce(Subquery(recent), Value(0)))
        .exclude(sessions_30d=F("actual"))
        .update(sessions_30d=Coalesce(Subquery(recent), Value(0)))
    )
