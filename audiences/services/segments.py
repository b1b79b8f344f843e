"""Writes for segments. Rule-tree segments are compiled in ``audiences.segments``."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audiences.models import Segment, SegmentMember, Subscriber
from notifyhub.exceptions import ApplicationError


class SegmentError(ApplicationError):
    """A segment cannot be saved as asked (name taken, invalid rules, cycle…)."""


@transaction.atomic
def segment_create_static(
    *,
    name: str,
    subscribers: QuerySet[Subscriber] | Iterable[int],
    created_by: User | None = None,
    description: str = "",
) -> Segment:
    """Create a static segment holding ``subscribers`` (a queryset or ids).

    Transaction: atomic; a taken name raises ``SegmentError`` and writes nothing.
    Members are inserted set-based (``INSERT … SELECT`` for a queryset).
    """
    name = name.strip()
    if not name:
        raise SegmentError("Give the segment a name.")
    if Segment.objects.filter(name__iexact=name).exists():
        raise SegmentError(f"A segment named “{name}” already exists; choose another name.")
    segment = Segment.objects.create(
        name=name,
        kind=Segment.Kind.STATIC,
        description=description,
        created_by=created_by if created_by is not None and created_by.pk else None,
    )
    segment_add_members(segment=segment, subscribers=subscribers)
    return segment


def segment_add_members(*, segment: Segment, subscribers: QuerySet[Subscriber] | Iterable[int]) -> int:
    """Add members to a static segment; already-present members are ignored.

    Idempotent (unique (segment, subscriber) + ``ignore_conflicts``). Returns the
    number of members the segment has afterwards.
    """
    if segment.kind != Segment.Kind.STATIC:
        raise SegmentError(f"“{segment.name}” is a rule segment; only static segments hold members.")
    if isinstance(subscribers, QuerySet):
        # One INSERT … SELECT: the members never travel through Python. ("WHERE true"
        # because SQLite needs it to parse an upsert after a SELECT.)
        select_sql, params = (
            subscribers.order_by().annotate(member_pk=F("pk")).values("member_pk").query.sql_with_params()
        )
        table = connection.ops.quote_name(SegmentMember._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (segment_id, subscriber_id, added_at) "  # noqa: S608
                f"SELECT %s, member.member_pk, %s FROM ({select_sql}) AS member WHERE true "
                "ON CONFLICT (segment_id, subscriber_id) DO NOTHING",
                [segment.pk, timezone.now(), *params],
            )
        return SegmentMember.objects.filter(segment=segment).count()
    batch: list[SegmentMember] = []
    for subscriber_id in subscribers:
        batch.append(SegmentMember(segment=segment, subscriber_id=subscriber_id))
        if len(batch) >= 5000:
            SegmentMember.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    if batch:
        SegmentMember.objects.bulk_create(batch, ignore_conflicts=True)
    return SegmentMember.objects.filter(segment=segment).count()
