"""The one ``INSERT … SELECT`` that plans a run, for PostgreSQL and SQLite.

Shape (``p`` is one row per reachable subscriber, ``d`` each of their active devices)::

    INSERT INTO delivery_delivery (…)
    SELECT run, d.id, p.sid, <variant by bucket>, <control>, <language CASE>,
           <status>, <reason>, <scheduled_for>, 0, '', ''
    FROM (SELECT a.*, zone map columns
          FROM (SELECT id, language, timezone, own quiet hours, bucket
                FROM (<campaign audience>) s) a
          LEFT JOIN (VALUES (zone, due, status, reason, local second), …) m
                 ON m.column1 = a.tz) p
    JOIN audiences_device d ON d.subscriber_id = p.sid AND d.is_active
    WHERE 1 = 1 ORDER BY d.id
    ON CONFLICT (run_id, device_id) DO NOTHING

``VALUES`` columns are named column1… by both databases. Only quoted names,
integers, our own constants and generated SQL are interpolated; every other value
is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from audiences.models import Device
from campaigns.models import Campaign
from campaigns.selectors import campaign_served_language, variant_languages
from delivery.models import Delivery, Run
from delivery.planning.assignment import BUCKETS, Assignment, bucket_sql
from delivery.planning.timing import REASON_QUIET, REASON_QUIET_DEFERRED, Timing

D = Delivery.Status
REASON_CONTROL = "control"
DAY_SECONDS = 86_400


def _seconds_of_day_sql(column: str) -> str:
    """A time column as seconds since midnight (NULL stays NULL)."""
    if connection.vendor == "postgresql":
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS integer)"
    if connection.vendor == "sqlite":  # stored as 'HH:MM:SS[.ffffff]'
        return (
            f"(CAST(substr({column}, 1, 2) AS integer) * 3600"
            f" + CAST(substr({column}, 4, 2) AS integer) * 60 + CAST(substr({column}, 7, 2) AS integer))"
        )
    raise ImproperlyConfigured(f"Planning supports PostgreSQL and SQLite, not {connection.vendor}.")


def _plus_seconds_sql(timestamp: str, seconds: str) -> str:
    if connection.vendor == "postgresql":
        return f"({timestamp} + ({seconds}) * INTERVAL '1 second')"
    return f"datetime({timestamp}, '+' || ({seconds}) || ' seconds')"


def _language_case(column: str, served: dict[str, str], default: str, params: list[Any]) -> str:
    """``CASE column WHEN 'pt-br' THEN 'pt' … ELSE default END`` (values as params)."""
    whens = []
    for language, language_served in sorted(served.items()):
        if language_served != default:
            whens.append("WHEN %s THEN %s")
            params += [language, language_served]
    params.append(default)
    return f"(CASE {column} {' '.join(whens)} ELSE %s END)" if whens else "%s"


def _served(*, campaign: Campaign, languages: Iterable[str], available: set[str]) -> dict[str, str]:
    return {
        language: campaign_served_language(
            language=language, available=available, default=campaign.default_language
        )
        for language in languages
    }


def _literal(value: str) -> str:
    """One of our own status/reason constants as an SQL string literal."""
    if not value.replace("_", "").isalnum():  # pragma: no cover - a programming error
        raise ValueError(value)
    return f"'{value}'"


def insert_sql(
    *,
    run: Run,
    campaign: Campaign,
    assignment: Assignment,
    audience_sql: str,
    audience_params: Sequence[object],
    zones: dict[str, tuple[Timing, int]],
    fallback: tuple[Timing, int],
    languages: set[str],
) -> tuple[str, list[Any]]:
    """The one INSERT … SELECT (and its params, in statement order) that plans the run.

    ``zones`` maps each time zone name to its timing and the local second of day of
    that timing; ``fallback`` (the campaign's fallback zone) is used for a zone name
    missing from the map (unknown, empty).
    """
    qn = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    select_params: list[Any] = []  # the language CASEs, in the SELECT list

    # Per subscriber: language, zone, own quiet hours (seconds of day) and bucket.
    # Only quoted names, integers, our constants and generated SQL are interpolated (S608).
    inner = (
        f"SELECT s.{qn('id')} AS sid, s.{qn('language')} AS lang, s.{qn('timezone')} AS tz, "  # noqa: S608
        f"{_seconds_of_day_sql('s.' + qn('quiet_hours_start'))} AS qs, "
        f"{_seconds_of_day_sql('s.' + qn('quiet_hours_end'))} AS qe, "
        f"{bucket_sql('s.' + qn('id'), campaign.pk)} AS bucket "
        f"FROM ({audience_sql}) s"
    )
    # …joined to the zone map: when it is due there, its status there, and that local time.
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(zones))
    values_params: list[Any] = []
    for name, (timing, seconds) in zones.items():
        values_params += [name, adapt(timing.scheduled_for), timing.status, timing.reason, seconds]
    fallback_timing, fallback_seconds = fallback
    planned = (
        "SELECT a.sid, a.lang, a.qs, a.qe, a.bucket, COALESCE(m.column2, %s) AS due, "  # noqa: S608
        "COALESCE(m.column3, %s) AS zstatus, COALESCE(m.column4, %s) AS zreason, "
        "COALESCE(m.column5, %s) AS lt "
        f"FROM ({inner}) a LEFT JOIN (VALUES {values}) m ON m.column1 = a.tz"
    )
    if assignment.upper < BUCKETS:  # test then winner: only the test sample now
        planned += f" WHERE a.bucket < {assignment.upper}"
    planned_params = [
        adapt(fallback_timing.scheduled_for),
        fallback_timing.status,
        fallback_timing.reason,
        fallback_seconds,
        *audience_params,
        *values_params,
    ]

    # Variant and language, per bucket range (control first).
    control = f"(p.bucket < {assignment.control})"
    *bounded, (_upper, last) = assignment.ranges
    ranges: list[tuple[str, set[str]]] = []  # (condition, languages served) before the last range
    if assignment.control:
        ranges.append((control, _common_languages(assignment)))
    ranges += [(f"p.bucket < {bound}", variant_languages(variant=variant)) for bound, variant in bounded]
    variant_whens = [f"WHEN {control} THEN NULL"] if assignment.control else []
    variant_whens += [f"WHEN p.bucket < {bound} THEN {int(variant.pk)}" for bound, variant in bounded]
    variant_sql = (
        f"(CASE {' '.join(variant_whens)} ELSE {int(last.pk)} END)" if variant_whens else str(int(last.pk))
    )
    last_served = _served(campaign=campaign, languages=languages, available=variant_languages(variant=last))
    served_by_range = [_served(campaign=campaign, languages=languages, available=a) for _c, a in ranges]
    if all(served == last_served for served in served_by_range):  # the usual case: one CASE
        language_sql = _language_case("p.lang", last_served, campaign.default_language, select_params)
    else:
        whens = []
        for (condition, _available), served in zip(ranges, served_by_range, strict=True):
            case = _language_case("p.lang", served, campaign.default_language, select_params)
            whens.append(f"WHEN {condition} THEN {case}")
        last_case = _language_case("p.lang", last_served, campaign.default_language, select_params)
        language_sql = f"(CASE {' '.join(whens)} ELSE {last_case} END)"

    # Status, reason and time: control, else the zone's, else the subscriber's own quiet hours.
    in_own = (
        f"(p.zstatus = {_literal(D.QUEUED)} AND p.qs IS NOT NULL AND ("
        "(p.qs < p.qe AND p.lt >= p.qs AND p.lt < p.qe) OR (p.qs > p.qe AND (p.lt >= p.qs OR p.lt < p.qe))))"
    )
    suppressed, control_reason = _literal(D.SUPPRESSED), _literal(REASON_CONTROL)
    if campaign.quiet_hours_policy == Campaign.QuietHoursPolicy.SKIP:
        status_sql = (
            f"(CASE WHEN {control} THEN {suppressed} WHEN {in_own} THEN {suppressed} ELSE p.zstatus END)"
        )
        reason_sql = (
            f"(CASE WHEN {control} THEN {control_reason} WHEN {in_own} THEN {_literal(REASON_QUIET)} "
            "ELSE p.zreason END)"
        )
        scheduled_sql = "p.due"
    else:
        status_sql = f"(CASE WHEN {control} THEN {suppressed} ELSE p.zstatus END)"
        waiting = _literal(REASON_QUIET_DEFERRED)
        reason_sql = (
            f"(CASE WHEN {control} THEN {control_reason} WHEN {in_own} THEN {waiting} ELSE p.zreason END)"
        )
        # To the end of their own window (control rows too: "when they would have got it").
        deferred = _plus_seconds_sql("p.due", f"(p.qe - p.lt + {DAY_SECONDS}) %% {DAY_SECONDS}")
        scheduled_sql = f"(CASE WHEN {in_own} THEN {deferred} ELSE p.due END)"

    table = qn(Delivery._meta.db_table)
    columns = ", ".join(
        qn(name)
        for name in (
            "run_id", "device_id", "subscriber_id", "variant_id", "is_control", "language", "status",
            "reason", "scheduled_for", "attempts", "provider_message_id", "error",
        )
    )  # fmt: skip
    device_table = qn(Device._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608
        f"SELECT {int(run.pk)}, d.{qn('id')}, p.sid, {variant_sql}, {control}, {language_sql}, "
        f"{status_sql}, {reason_sql}, {scheduled_sql}, 0, '', '' "
        f"FROM ({planned}) p "
        f"JOIN {device_table} d ON d.{qn('subscriber_id')} = p.sid AND d.{qn('is_active')} = %s "
        # SQLite reads "ON CONFLICT" right after a join as the join's ON: a WHERE separates them.
        "WHERE 1 = 1 "
        # In device order, the index inserts and the foreign-key checks at commit walk the
        # tables in order instead of at random: a third faster at 1M rows on PostgreSQL.
        f"ORDER BY d.{qn('id')} "
        f"ON CONFLICT ({qn('run_id')}, {qn('device_id')}) DO NOTHING"
    )
    return sql, [*select_params, *planned_params, True]


def _common_languages(assignment: Assignment) -> set[str]:
    """Languages every planned variant is written in (what the control group is counted in)."""
    sets = [variant_languages(variant=variant) for _bound, variant in assignment.ranges]
    return set.intersection(*sets) if sets else set()
