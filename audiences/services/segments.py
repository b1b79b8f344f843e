"""Writes for segments. Rule-tree segments are compiled in ``audiences.segments``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audiences.models import Segment, SegmentMember, Subscriber
from audiences.segments import Validated, validate_rules
from audiences.segments.loading import rule_context_load
from audiences.selectors import segment_estimate, subscribers_unknown_external_ids
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


# -- rule segments ---------------------------------------------------------------


def segment_validate_rules(*, rules: Any, segment: Segment | None = None) -> Validated:
    """Normalize ``rules`` and list problems (reads attributes, topics and segments)."""
    context = rule_context_load(segment_id=segment.pk if segment is not None else None)
    return validate_rules(rules, context=context)


def _rules_error(validated: Validated) -> SegmentError:
    problems = [{"path": p.path, "where": p.where, "message": p.message} for p in validated.problems]
    text = "; ".join(str(p) for p in validated.problems[:5])
    more = f" (and {len(validated.problems) - 5} more)" if len(validated.problems) > 5 else ""
    return SegmentError(f"The rules need fixing: {text}{more}", extra={"problems": problems})


@transaction.atomic
def segment_save(
    *,
    segment: Segment | None = None,
    name: str,
    rules: Any,
    description: str = "",
    created_by: User | None = None,
) -> Segment:
    """Create (``segment=None``) or update a rule segment after validating its rules.

    Transaction: atomic; invalid rules, a loop through other segments or a taken name
    raise ``SegmentError`` (with ``extra["problems"]`` per condition) and write
    nothing. The segment rows are locked while checking for loops, so two people
    cannot create A → B and B → A at the same moment. Saving the same values again
    changes only ``updated_at``.
    """
    name = name.strip()
    if not name:
        raise SegmentError("Give the segment a name.")
    taken = Segment.objects.filter(name__iexact=name)
    if segment is not None and segment.pk:
        taken = taken.exclude(pk=segment.pk)
    if taken.exists():
        raise SegmentError(f"A segment named “{name}” already exists; choose another name.")
    if segment is not None and segment.pk and segment.kind != Segment.Kind.DYNAMIC:
        raise SegmentError(f"“{segment.name}” is a static list; it has members, not rules.")
    # Serialize rule saves so loop checks see every committed inclusion.
    list(Segment.objects.select_for_update().filter(kind=Segment.Kind.DYNAMIC).values_list("pk", flat=True))
    validated = segment_validate_rules(
        rules=rules, segment=segment if segment is not None and segment.pk else None
    )
    if not validated.ok:
        raise _rules_error(validated)
    if segment is None or not segment.pk:
        return Segment.objects.create(
            name=name,
            description=description,
            kind=Segment.Kind.DYNAMIC,
            rules=validated.rules,
            created_by=created_by if created_by is not None and created_by.pk else None,
        )
    segment.name, segment.description, segment.rules = name, description, validated.rules
    segment.save(update_fields=["name", "description", "rules", "updated_at"])
    return segment


def segment_update_rules(*, segment: Segment, rules: Any) -> Segment:
    """Replace a rule segment's rules (validated, atomic; see ``segment_save``)."""
    return segment_save(segment=segment, name=segment.name, description=segment.description, rules=rules)


def segment_refresh_count(*, segment: Segment, topic_id: int | None = None) -> Segment:
    """Store the segment's current size and reachable size (one counting query).

    Idempotent: recounting writes the same numbers unless the audience changed.
    """
    estimate = segment_estimate(segment=segment, topic_id=topic_id, sample_size=0)
    segment.last_count, segment.last_reachable = estimate.total, estimate.reachable
    segment.counted_at = timezone.now()
    Segment.objects.filter(pk=segment.pk).update(
        last_count=segment.last_count, last_reachable=segment.last_reachable, counted_at=segment.counted_at
    )
    return segment


def parse_external_ids(text: str) -> list[str]:
    """External ids from a pasted list: one per line, or separated by commas, semicolons or tabs."""
    return list(dict.fromkeys(part.strip() for part in re.split(r"[\r\n,;\t]+", text) if part.strip()))


@transaction.atomic
def segment_add_members_by_external_id(*, segment: Segment, external_ids: Iterable[str]) -> int:
    """Add the subscribers with these external ids to a static segment.

    All or nothing: if any id is unknown, ``SegmentError`` names them and nothing is
    added. Idempotent (members already present are kept once). Returns the member count.
    """
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        raise SegmentError("Paste at least one external id.")
    unknown = subscribers_unknown_external_ids(external_ids=wanted)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise SegmentError(
            f"{len(unknown)} of the pasted ids match no subscriber ({shown}); "
            "fix or remove them and paste again. Nothing was added.",
            extra={"unknown": unknown},
        )
    total = 0
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        total = segment_add_members(
            segment=segment, subscribers=Subscriber.objects.filter(external_id__in=chunk)
        )
    return total
