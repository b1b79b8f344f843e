"""When a run's message is due in a time zone: local time, late policies, quiet hours (pure logic)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

from campaigns.models import Campaign
from delivery.models import Delivery
from delivery.suppression import (
    QUIET_HOURS_DEFERRED,
    QuietWindow,
    campaign_quiet_window,
    parse_quiet_hours,
)

UTC = dt.UTC
D = Delivery.Status
# A subscriber whose local time passed less than this long before planning still
# gets the message at once: it is "now", not "late".
LATE_GRACE = dt.timedelta(minutes=15)
REASON_LATE = "local_time_passed"
REASON_QUIET = "quiet_hours"
# Queued, but held until the quiet hours end (the same reason send time records).
REASON_QUIET_DEFERRED = QUIET_HOURS_DEFERRED

# One definition of the quiet-hours window for planning and for the send-time check.
Window = QuietWindow
parse_window = parse_quiet_hours


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
