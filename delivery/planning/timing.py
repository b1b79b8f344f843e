"""When a run's message is due in a time zone: local time, late policies, quiet hours (pure logic)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Campaign
from delivery.models import Delivery
from delivery.suppression import QUIET_HOURS_DEFERRED

UTC = dt.UTC
D = Delivery.Status
# A subscriber whose local time passed less than this long before planning still
# gets the message at once: it is "now", not "late".
LATE_GRACE = dt.timedelta(minutes=15)
REASON_LATE = "local_time_passed"
REASON_QUIET = "quiet_hours"
# Queued, but held until the quiet hours end (the same reason send time records).
REASON_QUIET_DEFERRED = QUIET_HOURS_DEFERRED

Window = tuple[dt.time, dt.time]


def parse_window(value: str) -> Window | None:
    """``"22:00-08:00"`` → (22:00, 08:00); empty (or equal ends) → None; else ImproperlyConfigured."""
    value = value.strip()
    if not value:
        return None
    try:
        start, end = (dt.time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"NOTIFYHUB_QUIET_HOURS={value!r} is not a window; use 'HH:MM-HH:MM' (e.g. '22:00-08:00') or ''."
        ) from exc
    return None if start == end else (start, end)


def campaign_quiet_window(*, campaign: Campaign) -> Window | None:
    """The campaign's own quiet hours when it sets both ends, else the app's default."""
    if campaign.quiet_hours_start is not None and campaign.quiet_hours_end is not None:
        if campaign.quiet_hours_start == campaign.quiet_hours_end:
            return None
        return (campaign.quiet_hours_start, campaign.quiet_hours_end)
    return parse_window(settings.NOTIFYHUB_QUIET_HOURS)


def in_window(moment: dt.time, window: Window) -> bool:
    """Whether a local time of day is inside [start, end) (which may wrap midnight)."""
    start, end = window
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def window_end(local: dt.datetime, window: Window, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first local ``end`` after ``local`` (which is inside the window), in UTC."""
    end = window[1]
    day = local.date() if local.time() < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


@lru_cache(maxsize=1)
def known_zones() -> tuple[str, ...]:
    """The IANA time zone names (what ``validate_timezone`` accepts), without the posix/right copies."""
    return tuple(
        sorted(name for name in zoneinfo.available_timezones() if not name.startswith(("posix/", "right/")))
    )


@lru_cache(maxsize=1024)
def zone_or_none(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class Timing:
    scheduled_for: dt.datetime  # UTC; for suppressed rows, when it would have been due
    status: str
    reason: str = ""

    def local_seconds(self, zone: zoneinfo.ZoneInfo) -> int:
        local = self.scheduled_for.astimezone(zone)
        return local.hour * 3600 + local.minute * 60 + local.second


def zone_timing(
    *, campaign: Campaign, occurrence: dt.datetime, zone: zoneinfo.ZoneInfo, now: dt.datetime
) -> Timing:
    """When a subscriber in ``zone`` gets this run (without their own quiet hours).

    Local-time campaigns: the local date and time in the zone (a time skipped by a DST
    change resolves forward, an ambiguous one to its first occurrence); if it passed
    more than LATE_GRACE before ``now``, the late policy. Every other schedule: the
    run's occurrence. Then the campaign's (or app's) quiet hours: defer to their end,
    or suppress.
    """
    when = occurrence
    if (
        campaign.schedule_type == Campaign.ScheduleType.LOCAL_TIME
        and campaign.local_date
        and campaign.local_time
    ):
        day = campaign.local_date
        when = dt.datetime.combine(day, campaign.local_time, tzinfo=zone).astimezone(UTC)
        if now > when + LATE_GRACE:
            policy = campaign.late_policy
            if policy == Campaign.LatePolicy.SKIP:
                return Timing(when, D.SUPPRESSED, REASON_LATE)
            if policy == Campaign.LatePolicy.SEND_NOW:
                when = now
            else:  # next day at that local time (or the first day it is still ahead)
                while now > when + LATE_GRACE:
                    day += dt.timedelta(days=1)
                    when = dt.datetime.combine(day, campaign.local_time, tzinfo=zone).astimezone(UTC)
    window = campaign_quiet_window(campaign=campaign)
    if window is not None:
        local = when.astimezone(zone)
        if in_window(local.time(), window):
            if campaign.quiet_hours_policy == Campaign.QuietHoursPolicy.SKIP:
                return Timing(when, D.SUPPRESSED, REASON_QUIET)
            return Timing(window_end(local, window, zone), D.QUEUED, REASON_QUIET_DEFERRED)
    return Timing(when, D.QUEUED)
