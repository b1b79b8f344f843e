"""Send-time suppression: consent, quiet hours and frequency caps, for one batch at a time.

``send_batch`` calls these inside its reservation transaction, after locking the
batch's subscribers, so what they read is the state committed before the batch was
reserved (an opt-out committed after a batch's claim always stops it).

- **Consent and reachability** are one SQL ``CASE`` over the batch's rows
  (``block_reason``): the first reason that applies, or ``""``.
- **Quiet hours** (``quiet_until``) are the subscriber's own window and the campaign's
  (its override, or the app's ``NOTIFYHUB_QUIET_HOURS``), in the subscriber's time
  zone. Pure time arithmetic on the rows the batch already loaded.
- **Frequency caps** are counted in SQL for the whole batch (``cap_counts``: one
  grouped aggregate) in each subscriber's local day and ISO week — the boundaries are
  computed once per distinct time zone in the batch and applied with a
  ``subscriber_id IN (…) AND sent_at >= …`` disjunction, portable to SQLite — and
  judged per subscriber (``cap_verdict``).

A cap counts *messages to a person*, not rows: one run reaching two of a subscriber's
devices is one message (distinct runs are counted). Transactional topics are exempt
and are not counted either; test sends are never counted.
"""

from __future__ import annotations

import datetime as dt
import operator
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, reduce

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, Value, When

from audiences.models import Subscriber, TopicPreference
from campaigns.models import Campaign
from delivery.models import Delivery

D = Delivery.Status
QuietWindow = tuple[dt.time, dt.time]

# --- Reasons recorded on Delivery.reason ---------------------------------------------
# Suppressed (final).
CAMPAIGN_CANCELLED = "campaign_cancelled"
SUBSCRIBER_ERASED = "subscriber_erased"
PUSH_OPT_OUT = "push_opt_out"
TOPIC_OPT_OUT = "topic_opt_out"
DEVICE_INACTIVE = "device_inactive"
DEVICE_REASSIGNED = "device_reassigned"  # the token now belongs to another subscriber
SUBSCRIBER_PAUSED = "subscriber_paused"
QUIET_HOURS = "quiet_hours"  # campaign policy "skip"
CAP_DROPPED = {
    "daily": "cap_daily",
    "weekly": "cap_weekly",
    "topic": "cap_topic",
    "subscriber": "cap_subscriber",
}
# Queued again, waiting (kept on the row until it is sent).
QUIET_HOURS_DEFERRED = "quiet_hours_deferred"
CAP_DEFERRED = {
    "daily": "capped_daily",
    "weekly": "capped_weekly",
    "topic": "capped_topic",
    "subscriber": "capped_subscriber",
}

# A cap reached only because of messages still in flight to the same person (another
# campaign's batch being sent right now) is judged again this much later: those may
# still fail or be suppressed, so neither waiting a day nor dropping would be fair.
IN_FLIGHT_RECHECK = dt.timedelta(seconds=60)


# --- Time zones and local boundaries ---------------------------------------------------


@lru_cache(maxsize=1024)
def zone_for(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone, or UTC for a name this system does not know."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone).astimezone(dt.UTC)


@dataclass(frozen=True)
class LocalBounds:
    """A subscriber's current local day and ISO week, as UTC instants."""

    day_start: dt.datetime
    next_day: dt.datetime
    week_start: dt.datetime  # Monday 00:00 local
    next_week: dt.datetime


def local_bounds(*, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> LocalBounds:
    today = now.astimezone(zone).date()
    monday = today - dt.timedelta(days=today.weekday())
    return LocalBounds(
        day_start=_local_midnight(today, zone),
        next_day=_local_midnight(today + dt.timedelta(days=1), zone),
        week_start=_local_midnight(monday, zone),
        next_week=_local_midnight(monday + dt.timedelta(days=7), zone),
    )


# --- Quiet hours --------------------------------------------------------------------


def parse_quiet_hours(value: str) -> QuietWindow | None:
    """``"22:00-08:00"`` → (22:00, 08:00); empty → None (no app-wide quiet hours)."""
    value = value.strip()
    if not value:
        return None
    try:
        start, end = (dt.time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"NOTIFYHUB_QUIET_HOURS={value!r} is not a window; use HH:MM-HH:MM (e.g. 22:00-08:00) or empty."
        ) from exc
    return None if start == end else (start, end)


def campaign_quiet_window(*, campaign: Campaign) -> QuietWindow | None:
    """The campaign's override if it sets one (start == end: none at all), else the app's."""
    if campaign.quiet_hours_start is not None and campaign.quiet_hours_end is not None:
        if campaign.quiet_hours_start == campaign.quiet_hours_end:
            return None
        return (campaign.quiet_hours_start, campaign.quiet_hours_end)
    return parse_quiet_hours(settings.NOTIFYHUB_QUIET_HOURS)


def subscriber_quiet_window(*, subscriber: Subscriber) -> QuietWindow | None:
    start, end = subscriber.quiet_hours_start, subscriber.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    return (start, end)


def _window_end(local: dt.datetime, window: QuietWindow) -> dt.datetime | None:
    """If ``local`` (an aware local time) is inside ``window``, the local instant it ends."""
    start, end = window
    t = local.time().replace(tzinfo=None)
    if start < end:
        inside, days = start <= t < end, 0
    else:  # wraps midnight, e.g. 22:00-08:00
        inside, days = (t >= start or t < end), (1 if t >= start else 0)
    if not inside:
        return None
    zone = local.tzinfo
    return dt.datetime.combine(local.date() + dt.timedelta(days=days), end, tzinfo=zone)


def quiet_until(
    *, now: dt.datetime, zone: zoneinfo.ZoneInfo, windows: Iterable[QuietWindow | None]
) -> dt.datetime | None:
    """When the quiet hours around ``now`` end for this subscriber (UTC), or None if not quiet.

    With two overlapping windows (their own and the campaign's), the later end: a
    message waits until it is outside both. Windows that together cover the whole
    day have no such moment; then it is the end of the last one reached, and the
    next send-time check defers again.
    """
    active = [w for w in windows if w is not None]
    if not active:
        return None
    moment = now.astimezone(zone)
    moved = False
    for _ in range(len(active) + 1):  # each window can push the moment at most once
        ends = [end for w in active if (end := _window_end(moment, w)) is not None]
        if not ends:
            break
        moment, moved = max(ends).astimezone(dt.UTC).astimezone(zone), True
    return moment.astimezone(dt.UTC) if moved else None


# --- Consent and reachability (SQL) ---------------------------------------------------


def block_reason(*, now: dt.datetime) -> Case:
    """Why a Delivery row must not be sent now, as one SQL expression (``""`` = none).

    Annotate a Delivery queryset with it. Reads the subscriber, device, topic
    preference and campaign rows as committed now; the first matching reason wins.
    """
    chosen = TopicPreference.objects.filter(
        subscriber_id=OuterRef("subscriber_id"), topic_id=OuterRef("run__campaign__topic_id")
    )
    topic_out = Q(Exists(chosen.filter(opted_in=False))) | (
        ~Q(Exists(chosen)) & Q(run__campaign__topic__default_opt_in=False)
    )
    return Case(
        When(run__campaign__status=Campaign.Status.CANCELLED, then=Value(CAMPAIGN_CANCELLED)),
        When(subscriber__erased_at__isnull=False, then=Value(SUBSCRIBER_ERASED)),
        When(subscriber__push_opt_in=False, then=Value(PUSH_OPT_OUT)),
        When(topic_out, then=Value(TOPIC_OPT_OUT)),
        When(device__is_active=False, then=Value(DEVICE_INACTIVE)),
        When(~Q(device__subscriber_id=F("subscriber_id")), then=Value(DEVICE_REASSIGNED)),
        When(subscriber__paused_until__gt=now, then=Value(SUBSCRIBER_PAUSED)),
        default=Value(""),
        output_field=CharField(),
    )


# --- Frequency caps -----------------------------------------------------------------


@dataclass(frozen=True)
class CapCounts:
    """Distinct other runs that reached a subscriber: ``sent`` already, ``all`` incl. in flight."""

    day_sent: int = 0
    day_all: int = 0
    week_sent: int = 0
    week_all: int = 0
    topic_day_sent: int = 0
    topic_day_all: int = 0
    topic_week_sent: int = 0
    topic_week_all: int = 0


@dataclass(frozen=True)
class CapLimits:
    """The caps a campaign's messages are held to (None = no such cap)."""

    per_day: int | None
    per_week: int | None
    topic_per_day: int | None
    topic_per_week: int | None

    @classmethod
    def for_campaign(cls, *, campaign: Campaign) -> CapLimits | None:
        """None for a transactional topic: exempt from every cap."""
        topic = campaign.topic
        if topic.is_transactional:
            return None
        return cls(
            per_day=settings.NOTIFYHUB_CAP_PER_DAY or None,
            per_week=settings.NOTIFYHUB_CAP_PER_WEEK or None,
            topic_per_day=topic.max_per_day,
            topic_per_week=topic.max_per_week,
        )


def _any(conditions: list[Q]) -> Q:
    return reduce(operator.or_, conditions) if conditions else Q(pk__in=[])


def cap_counts(
    *,
    run_id: int,
    topic_id: int,
    zones: Mapping[int, str],
    bounds: Mapping[str, LocalBounds],
) -> dict[int, CapCounts]:
    """Per subscriber in ``zones`` (id → time zone name), what counts against their caps.

    One grouped aggregate. Counts distinct *other* runs (not test sends, not
    transactional topics for the global counts) that were sent in the subscriber's
    current local day / ISO week, or are in flight now (``sending``: claimed or
    reserved by another batch, counted as today). Subscribers with nothing are absent.
    """
    if not zones:
        return {}
    by_zone: dict[str, list[int]] = {}
    for subscriber_id, zone in zones.items():
        by_zone.setdefault(zone, []).append(subscriber_id)
    today = _any(
        [Q(subscriber_id__in=ids, sent_at__gte=bounds[zone].day_start) for zone, ids in by_zone.items()]
    )
    this_week = _any(
        [Q(subscriber_id__in=ids, sent_at__gte=bounds[zone].week_start) for zone, ids in by_zone.items()]
    )
    earliest = min(bounds[zone].week_start for zone in by_zone)
    sent, in_flight = Q(status=D.SENT), Q(status=D.SENDING)
    marketing = Q(run__campaign__topic__is_transactional=False)
    same_topic = Q(run__campaign__topic_id=topic_id)

    def runs(condition: Q) -> Count:
        return Count("run_id", distinct=True, filter=condition)

    rows = (
        Delivery.objects.filter(subscriber_id__in=list(zones), run__is_test=False)
        .exclude(run_id=run_id)
        .filter(in_flight | (sent & Q(sent_at__gte=earliest)))
        .order_by()
        .values("subscriber_id")
        .annotate(
            day_sent=runs(marketing & sent & today),
            day_all=runs(marketing & ((sent & today) | in_flight)),
            week_sent=runs(marketing & sent & this_week),
            week_all=runs(marketing & ((sent & this_week) | in_flight)),
            topic_day_sent=runs(same_topic & sent & today),
            topic_day_all=runs(same_topic & ((sent & today) | in_flight)),
            topic_week_sent=runs(same_topic & sent & this_week),
            topic_week_all=runs(same_topic & ((sent & this_week) | in_flight)),
        )
    )
    return {row.pop("subscriber_id"): CapCounts(**row) for row in rows}


@dataclass(frozen=True)
class CapVerdict:
    kind: str  # "subscriber", "topic", "daily" or "weekly" (see CAP_DEFERRED / CAP_DROPPED)
    until: dt.datetime  # when the cap may allow it again
    in_flight: bool  # reached only by counting messages still being sent


def cap_verdict(
    *,
    counts: CapCounts,
    limits: CapLimits,
    frequency_limit: str,
    bounds: LocalBounds,
    now: dt.datetime,
) -> CapVerdict | None:
    """Whether one more message now would break a cap; None if it may be sent.

    Checked in this order, the first that applies names the reason: the
    subscriber's own limit (daily → 1 a day, weekly → 1 a week), the topic's caps,
    the global daily and weekly caps. ``until`` is the latest boundary among the caps
    already reached by sent messages (the next local day or week start).
    """
    day, week = bounds.next_day, bounds.next_week
    caps: list[tuple[str, int, int, int | None, dt.datetime]] = [
        ("subscriber", counts.day_sent, counts.day_all, 1 if frequency_limit == "daily" else None, day),
        ("subscriber", counts.week_sent, counts.week_all, 1 if frequency_limit == "weekly" else None, week),
        ("topic", counts.topic_day_sent, counts.topic_day_all, limits.topic_per_day, day),
        ("topic", counts.topic_week_sent, counts.topic_week_all, limits.topic_per_week, week),
        ("daily", counts.day_sent, counts.day_all, limits.per_day, day),
        ("weekly", counts.week_sent, counts.week_all, limits.per_week, week),
    ]
    reached = [
        (kind, until) for kind, done, _all, limit, until in caps if limit is not None and done >= limit
    ]
    if reached:
        return CapVerdict(kind=reached[0][0], until=max(until for _kind, until in reached), in_flight=False)
    pending = [kind for kind, _done, total, limit, _until in caps if limit is not None and total >= limit]
    if pending:
        return CapVerdict(kind=pending[0], until=now + IN_FLIGHT_RECHECK, in_flight=True)
    return None
