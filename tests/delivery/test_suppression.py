"""Quiet hours, local day/week boundaries and cap verdicts (pure), and cap counting (SQL)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import assume, given
from hypothesis import strategies as st

from delivery.models import Delivery, Run
from delivery.suppression import (
    IN_FLIGHT_RECHECK,
    CapCounts,
    CapLimits,
    cap_counts,
    cap_verdict,
    local_bounds,
    parse_quiet_hours,
    quiet_until,
    zone_for,
)
from tests.delivery.test_sending import (
    NOW,
    audience,
    engine_settings,
    history,
    queue,
    sending_campaign,
    start_run,
)
from tests.factories import TopicFactory

__all__ = ["engine_settings"]  # the autouse fixture, shared with test_sending

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NIGHT = (dt.time(22), dt.time(8))


def at(zone: zoneinfo.ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone).astimezone(UTC)


# --- Quiet hours ----------------------------------------------------------------------


def test_parse_quiet_hours() -> None:
    assert parse_quiet_hours("22:00-08:00") == NIGHT
    assert parse_quiet_hours(" 13:30 - 14:00 ") == (dt.time(13, 30), dt.time(14))
    assert parse_quiet_hours("") is None
    assert parse_quiet_hours("08:00-08:00") is None
    with pytest.raises(ImproperlyConfigured, match="HH:MM-HH:MM"):
        parse_quiet_hours("10pm to 8am")


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ((2030, 6, 12, 21, 59), None),
        ((2030, 6, 12, 22, 0), (2030, 6, 13, 8, 0)),  # wraps midnight: ends tomorrow
        ((2030, 6, 13, 3, 0), (2030, 6, 13, 8, 0)),  # after midnight: ends today
        ((2030, 6, 13, 8, 0), None),  # the end itself is outside
    ],
)
def test_quiet_until_a_window_across_midnight(
    local: tuple[int, ...], expected: tuple[int, ...] | None
) -> None:
    result = quiet_until(now=at(BERLIN, *local), zone=BERLIN, windows=[NIGHT])
    assert result == (at(BERLIN, *expected) if expected else None)


def test_quiet_until_the_later_end_of_overlapping_windows() -> None:
    own = (dt.time(7), dt.time(9, 30))  # the subscriber sleeps in
    now = at(BERLIN, 2030, 6, 13, 3, 0)
    assert quiet_until(now=now, zone=BERLIN, windows=[NIGHT, own]) == at(BERLIN, 2030, 6, 13, 9, 30)
    assert quiet_until(now=now, zone=BERLIN, windows=[None, None]) is None


def test_quiet_until_across_a_dst_change() -> None:
    # The night clocks go forward in Berlin (31 March 2030): 08:00 CEST is 06:00 UTC.
    now = at(BERLIN, 2030, 3, 31, 1, 0)
    assert quiet_until(now=now, zone=BERLIN, windows=[NIGHT]) == dt.datetime(2030, 3, 31, 6, 0, tzinfo=UTC)


windows = st.tuples(st.times(), st.times()).filter(lambda w: w[0] != w[1])


@given(
    now=st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata"]),
    chosen=st.lists(windows, max_size=2),
)
def test_quiet_until_ends_outside_every_window_within_two_days(
    now: dt.datetime, zone: str, chosen: list[tuple[dt.time, dt.time]]
) -> None:
    def length(window: tuple[dt.time, dt.time]) -> float:
        start, end = (t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6 for t in window)
        return (end - start) % 86_400

    # Windows that cover the whole day together leave no moment to wait for.
    assume(sum(length(w) for w in chosen) < 86_400)
    tz = zoneinfo.ZoneInfo(zone)
    result = quiet_until(now=now, zone=tz, windows=chosen)

    def inside(moment: dt.datetime) -> bool:
        t = moment.astimezone(tz).time()
        return any((s <= t < e) if s < e else (t >= s or t < e) for s, e in chosen)

    if result is None:
        assert not inside(now)
    else:
        assert inside(now) and now < result <= now + dt.timedelta(days=2, hours=2)
        assert not inside(result)


# --- Local boundaries and verdicts ----------------------------------------------------


def test_local_bounds_follow_the_time_zone() -> None:
    auckland = local_bounds(now=NOW, zone=zone_for("Pacific/Auckland"))  # Thursday 01:00 local
    assert auckland.day_start == dt.datetime(2030, 6, 12, 12, 0, tzinfo=UTC)
    assert auckland.next_day == dt.datetime(2030, 6, 13, 12, 0, tzinfo=UTC)
    assert auckland.week_start == dt.datetime(2030, 6, 9, 12, 0, tzinfo=UTC)  # Monday 00:00 NZST
    assert auckland.next_week == dt.datetime(2030, 6, 16, 12, 0, tzinfo=UTC)
    assert zone_for("Not/AZone") == zoneinfo.ZoneInfo("UTC")


LIMITS = CapLimits(per_day=3, per_week=10, topic_per_day=1, topic_per_week=None)
BOUNDS = local_bounds(now=NOW, zone=BERLIN)


def test_cap_verdict_names_the_first_cap_and_waits_for_the_latest_boundary() -> None:
    def verdict(frequency_limit: str = "none", **counts: int):  # type: ignore[no-untyped-def]
        return cap_verdict(
            counts=CapCounts(**counts), limits=LIMITS, frequency_limit=frequency_limit, bounds=BOUNDS, now=NOW
        )

    assert verdict() is None
    assert verdict(day_sent=2, day_all=2, week_sent=9, week_all=9) is None
    daily = verdict(day_sent=3, day_all=3, week_sent=3, week_all=3)
    assert (daily.kind, daily.until, daily.in_flight) == ("daily", BOUNDS.next_day, False)
    both = verdict(day_sent=3, day_all=3, week_sent=10, week_all=10)
    assert (both.kind, both.until) == ("daily", BOUNDS.next_week)  # the day ends, the week does not
    assert verdict(topic_day_sent=1, topic_day_all=1, day_sent=3).kind == "topic"
    assert verdict("daily", day_sent=1, day_all=1).kind == "subscriber"
    assert verdict("weekly", week_sent=1, week_all=1).until == BOUNDS.next_week
    pending = verdict(day_sent=2, day_all=3)
    assert (pending.kind, pending.until, pending.in_flight) == ("daily", NOW + IN_FLIGHT_RECHECK, True)


# --- Cap counting (SQL) ---------------------------------------------------------------


@pytest.mark.django_db
def test_cap_counts_distinct_runs_in_each_local_day_and_week() -> None:
    offers = TopicFactory()
    run = start_run(sending_campaign(topic=offers))
    (auckland,) = audience(1, timezone="Pacific/Auckland")
    (berlin,) = audience(1)
    for device in (auckland, berlin):
        history(device.subscriber_id, sent_at=dt.datetime(2030, 6, 12, 11, 0, tzinfo=UTC), topic=offers)
        history(device.subscriber_id, sent_at=dt.datetime(2030, 6, 10, 6, 0, tzinfo=UTC))
        history(device.subscriber_id, sent_at=dt.datetime(2030, 6, 5, 6, 0, tzinfo=UTC))  # last week
        history(device.subscriber_id, sent_at=NOW, topic=TopicFactory(is_transactional=True))  # exempt
    queue(run, [berlin])  # this run's own rows never count
    Delivery.objects.filter(run=run).update(status=Delivery.Status.SENT, sent_at=NOW)
    test_run = start_run(sending_campaign())
    Run.objects.filter(pk=test_run.pk).update(is_test=True)
    queue(test_run, [berlin], status=Delivery.Status.SENT, sent_at=NOW)  # test sends never count
    in_flight = start_run(sending_campaign())
    queue(in_flight, [auckland], status=Delivery.Status.SENDING)

    zones = {auckland.subscriber_id: "Pacific/Auckland", berlin.subscriber_id: "Europe/Berlin"}
    bounds = {name: local_bounds(now=NOW, zone=zone_for(name)) for name in zones.values()}
    counts = cap_counts(run_id=run.pk, topic_id=offers.pk, zones=zones, bounds=bounds)

    # Auckland: 11:00 UTC was yesterday evening there; its week began Sunday 12:00 UTC.
    assert counts[auckland.subscriber_id] == CapCounts(
        day_sent=0, day_all=1, week_sent=2, week_all=3, topic_day_sent=0, topic_day_all=0,
        topic_week_sent=1, topic_week_all=1,
    )  # fmt: skip
    assert counts[berlin.subscriber_id] == CapCounts(
        day_sent=1, day_all=1, week_sent=2, week_all=2, topic_day_sent=1, topic_day_all=1,
        topic_week_sent=1, topic_week_all=1,
    )  # fmt: skip
