"""Planning 1,000,000 deliveries on PostgreSQL (issue #5 target: ≤ 60 s), and the planner's peak RSS.

Builds the audience set-based (``generate_series``): N reachable subscribers with one
active device each, spread over 24 time zones (one invalid), 8 languages and a tenth
with their own quiet hours, plus inactive second devices and opted-out subscribers
who must not be planned. The campaign is the heaviest kind to plan: local-time
delivery (a quarter of the zones already late: next-day policy), the app's quiet
hours (defer), an A/B split of two variants and a 10 % control group.

``run_plan`` runs in a separate process (this file run as a script) so that its
peak RSS is the planner's own. Baselines, measured in the same run on the same
data: a plain ``INSERT … SELECT`` of the same number of rows, no logic, (a) into a
scratch copy of the ledger table (same columns and indexes, no foreign keys) and
(b) into the ledger itself (with its foreign-key checks), for a throwaway run.

The audience is kept (``--reuse-db``) and reused when its fingerprint matches;
``--create-db`` always rebuilds. ``NOTIFYHUB_BENCH_DELIVERIES`` changes the size.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_plan_bench \\
     .venv/bin/python -m pytest tests/benchmarks/test_planning.py -m benchmark -s --create-db
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("NOTIFYHUB_BENCH_DELIVERIES", "1000000"))
OPTED_OUT = N // 50
TARGET_SECONDS = 60.0
PREFIX = "plan-"

ZONES = [
    "Pacific/Kiritimati", "Pacific/Auckland", "Australia/Sydney", "Asia/Tokyo", "Asia/Shanghai",
    "Asia/Kolkata", "Asia/Dubai", "Europe/Moscow", "Africa/Cairo", "Europe/Berlin", "Europe/Madrid",
    "Europe/London", "UTC", "Atlantic/Azores", "America/Sao_Paulo", "America/Argentina/Buenos_Aires",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage",
    "Pacific/Honolulu", "Pacific/Pago_Pago", "Mars/Olympus",
]  # fmt: skip
LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pt-br", "ar"]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


BUILD = [
    "TRUNCATE delivery_delivery, delivery_outboxmessage, audiences_event, audiences_device, "
    "audiences_segmentmember, audiences_topicpreference, audiences_consentrecord, audiences_subscriber "
    "RESTART IDENTITY CASCADE",
    # Subscribers 1..N are reachable; N+1..N+N/50 opted out of push.
    f"""
    INSERT INTO audiences_subscriber (external_id, email, first_name, last_name, language, timezone,
        country, city, interests, attributes, last_seen_at, sessions_30d, purchase_count, total_spent,
        last_purchase_at, push_opt_in, frequency_limit, quiet_hours_start, quiet_hours_end,
        created_at, updated_at)
    SELECT '{PREFIX}' || i, '', 'Bench', 'User', ({_array(LANGUAGES)})[1 + (i / 24) % 8],
        ({_array(ZONES)})[1 + i % 24], 'DE', 'Berlin', '[]'::jsonb, '{{}}'::jsonb, now(), 0, 0, 0, NULL,
        i <= {N}, 'none',
        CASE WHEN i % 10 = 3 THEN make_time(20 + i % 4, 0, 0) END,
        CASE WHEN i % 10 = 3 THEN make_time(6 + i % 3, 30, 0) END,
        now(), now()
    FROM generate_series(1, {N + OPTED_OUT}) AS i
    """,
    # One active device each; every tenth subscriber also has a dead one.
    """
    INSERT INTO audiences_device (subscriber_id, token, platform, is_active, is_test, invalidated_at,
        invalidation_reason, app_version, locale, last_seen_at, created_at)
    SELECT id, 'plan-token-' || id, (ARRAY['android', 'ios', 'web'])[1 + id % 3], true, false, NULL, '',
        '1.0', '', now(), now()
    FROM audiences_subscriber
    UNION ALL
    SELECT id, 'plan-dead-' || id, 'android', false, false, now(), 'unregistered', '1.0', '', now(), now()
    FROM audiences_subscriber WHERE id % 10 = 0
    """,
]
TABLES = ["audiences_subscriber", "audiences_device"]


def fingerprint(cursor: Any) -> tuple[int, int, int]:
    cursor.execute(
        "SELECT (SELECT count(*) FROM audiences_subscriber WHERE external_id LIKE %s),"
        " (SELECT count(*) FROM audiences_subscriber),"
        " (SELECT count(*) FROM audiences_device WHERE is_active)",
        [PREFIX + "%"],
    )
    row = cursor.fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def detach_indexes(cursor: Any) -> list[str]:
    """Drop the loaded tables' secondary indexes, unique and FK constraints; return the restore SQL."""
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('f', 'u') ORDER BY contype DESC",
        [TABLES],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = ANY(%s) AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        [TABLES],
    )
    indexes = cursor.fetchall()
    for table, name, _definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    restore = [definition for _name, definition in indexes]
    restore += [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints
    ]
    return restore


@pytest.fixture(scope="module")
def audience(django_db_setup: None, django_db_blocker: Any) -> dict[str, float]:
    from django.db import connection

    from tests.benchmarks.harness import stopwatch
    from tests.services import require

    with django_db_blocker.unblock():
        require(connection.vendor == "postgresql", "the planning benchmark needs PostgreSQL (DATABASE_URL)")
        wanted = (N + OPTED_OUT, N + OPTED_OUT, N + OPTED_OUT)
        with connection.cursor() as cursor:
            if fingerprint(cursor) == wanted:
                return {"build_seconds": 0.0, "reused": 1.0}
            with stopwatch() as build:
                cursor.execute("SET maintenance_work_mem = '256MB'")
                cursor.execute(BUILD[0])
                restore = detach_indexes(cursor)
                try:
                    for statement in BUILD[1:]:
                        cursor.execute(statement)
                finally:
                    for statement in restore:
                        cursor.execute(statement)
                cursor.execute("VACUUM ANALYZE audiences_subscriber")
                cursor.execute("VACUUM ANALYZE audiences_device")
            assert fingerprint(cursor) == wanted
        return {"build_seconds": build.seconds[0], "reused": 0.0}


COLUMNS = (
    "run_id, device_id, subscriber_id, variant_id, is_control, language, status, reason, scheduled_for, "
    "attempts, provider_message_id, error"
)
PLAIN_SELECT = (
    "SELECT %s, d.id, d.subscriber_id, NULL, false, 'en', 'queued', '', now(), 0, '', '' "
    "FROM audiences_device d JOIN audiences_subscriber s ON s.id = d.subscriber_id "
    "WHERE d.is_active AND s.push_opt_in"
)


@pytest.fixture(scope="module")
def planned(audience: dict[str, float], django_db_blocker: Any) -> dict[str, Any]:
    """Baselines, then ``run_plan`` in a child process; all committed (the child sees it), then cleaned up."""
    from django.db import connection
    from django.db.models import Count

    from campaigns.models import Campaign
    from delivery.models import Delivery, Run
    from tests.benchmarks.harness import stopwatch
    from tests.factories import CampaignFactory, TopicFactory, VariantFactory

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE delivery_delivery, delivery_outboxmessage")
        topic = TopicFactory(slug="bench-offers", default_opt_in=True)
        local_date = dt.date(2030, 6, 3)
        campaign = CampaignFactory(
            topic=topic,
            status=Campaign.Status.RUNNING,
            schedule_type=Campaign.ScheduleType.LOCAL_TIME,
            local_date=local_date,
            local_time=dt.time(10),
            late_policy=Campaign.LatePolicy.NEXT_DAY,
            ab_mode=Campaign.AbMode.SPLIT,
            control_percent=10,
        )
        for name in ("A", "B"):
            VariantFactory(campaign=campaign, name=name, title_es="Hola", body_es="Ofertas")
        first_zone = dt.datetime.combine(local_date, dt.time(10), tzinfo=dt.UTC) - dt.timedelta(hours=14)
        now = first_zone + dt.timedelta(hours=6)  # 10:00 has passed in UTC+8 and east of it: next day
        try:
            # Baselines: the same number of rows, no logic.
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS bench_delivery_scratch")
                cursor.execute("CREATE TABLE bench_delivery_scratch (LIKE delivery_delivery INCLUDING ALL)")
                with stopwatch() as scratch:
                    cursor.execute(f"INSERT INTO bench_delivery_scratch ({COLUMNS}) {PLAIN_SELECT}", [0])
                scratch_rows = cursor.rowcount
                cursor.execute("DROP TABLE bench_delivery_scratch")
                throwaway = Run.objects.create(
                    campaign=campaign, occurrence=first_zone - dt.timedelta(days=1)
                )
                with stopwatch() as ledger:
                    cursor.execute(
                        f"INSERT INTO delivery_delivery ({COLUMNS}) {PLAIN_SELECT}", [throwaway.pk]
                    )
                ledger_rows = cursor.rowcount
                cursor.execute("TRUNCATE delivery_delivery, delivery_outboxmessage")
                throwaway.delete()
                cursor.execute("VACUUM ANALYZE delivery_delivery")

            run = Run.objects.create(campaign=campaign, occurrence=first_zone)
            db = connection.settings_dict
            url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
            with stopwatch() as wall:
                child = subprocess.run(
                    [sys.executable, __file__, url, str(run.pk), now.isoformat()],
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=900,
                )
            assert child.returncode == 0, child.stderr[-3000:]
            planner = json.loads(child.stdout.strip().splitlines()[-1])
            run.refresh_from_db()
            return {
                "planner": planner,
                "wall": wall.seconds[0],
                "scratch": scratch.seconds[0],
                "scratch_rows": scratch_rows,
                "ledger": ledger.seconds[0],
                "ledger_rows": ledger_rows,
                "run_status": run.status,
                "audience_size": run.audience_size,
                "statuses": dict(
                    Delivery.objects.filter(run=run).values_list("status").annotate(n=Count("pk")).order_by()
                ),
                "control": Delivery.objects.filter(run=run, is_control=True).count(),
            }
        finally:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE delivery_delivery, delivery_outboxmessage")
            Run.objects.filter(campaign=campaign).delete()
            campaign.variants.all().delete()
            campaign.delete()
            topic.delete()


# The mark makes pytest-django create the test database; the work itself is done by the
# module fixtures outside the test's transaction (committed, so the planner process sees it).
@pytest.mark.django_db
def test_planning_a_million_deliveries(audience: dict[str, float], planned: dict[str, Any]) -> None:
    from tests.benchmarks.harness import record

    planner = planned["planner"]
    record(
        f"planning {N:,} deliveries (run_plan, PostgreSQL)",
        metrics={
            "run_plan seconds": planner["seconds"],
            "rows planned": planner["rows"],
            "planner peak RSS MiB": planner["peak_rss_mib"],
            "planner RSS before run_plan MiB": planner["rss_before_mib"],
            "child process wall seconds": planned["wall"],
            "ratio to plain INSERT…SELECT (scratch)": planner["seconds"] / planned["scratch"],
            "ratio to plain INSERT…SELECT (ledger)": planner["seconds"] / planned["ledger"],
        },
        baseline={
            "plain INSERT…SELECT into scratch copy seconds": planned["scratch"],
            "plain INSERT…SELECT into ledger seconds": planned["ledger"],
            **audience,
        },
        notes=(
            f"N={N:,} deliveries (+{OPTED_OUT:,} opted out, +{N // 10:,} dead devices not planned); "
            "local time 10:00, next-day late policy, quiet hours 22:00-08:00 defer, "
            f"A/B 50/50 + 10 % control; statuses: {planned['statuses']}; control rows: {planned['control']:,}"
        ),
    )
    assert planner["rows"] == N == planned["scratch_rows"] == planned["ledger_rows"]
    assert (planned["run_status"], planned["audience_size"]) == ("sending", N)
    assert abs(planned["control"] / N - 0.10) < 0.01
    assert planner["seconds"] <= TARGET_SECONDS, f"planning took {planner['seconds']:.1f} s"


# ---------------------------------------------------------------------------
# The planner process (this file run as a script)
# ---------------------------------------------------------------------------


def _main(url: str, run_id: int, now: str) -> None:
    import resource
    import time

    sys.path.insert(0, str(REPO_ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from delivery.planning import run_plan

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rows = run_plan(run_id=run_id, now=dt.datetime.fromisoformat(now))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": before}))


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
