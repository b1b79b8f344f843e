"""Delivery end to end (plan → dispatch → send → outcomes recorded) next to bare firebase-admin.

Issue #5's performance targets, measured in one run on PostgreSQL, a private Redis
(broker and the shared rate-limit cache) and the loopback FCM stub in its own process:

- **B_send**, the baseline: N bare Python processes — no Django, nothing but
  firebase-admin — calling ``messaging.send_each`` with 500-message batches of
  messages shaped like the engine's (notification, data with a tracked click URL,
  Android/APNs/Web Push options, collapse key, analytics label) to the same stub,
  through the same ``FCM_URL`` override and service account. Measured twice: with the
  SDK's own HTTP adapter ("bare", the baseline the targets use) and with the engine's
  adapter (a 100-connection keep-alive pool, no SDK retries), which shows how much of
  the gap is HTTP plumbing rather than the engine.
- **End to end**: a two-variant campaign with a personalized title (first name, city;
  English and Spanish) to N_DEVICES subscribers with one active device each. ``run_plan``
  runs in this process (timed on its own); ``celery beat`` ticks ``dispatch_due`` every
  second (``NOTIFYHUB_DISPATCH_SECONDS=1``) and a ``celery worker`` with N prefork pool
  processes (as in the Procfile) runs the ``send_batch`` tasks with the ``fcm`` backend
  until every row is final. The clock starts before planning and stops when no row is
  queued or sending; every row must then be ``sent`` and the stub must have accepted
  exactly one message per device.

Targets (issue #5): end to end ≥ 0.7 x B_send per worker process; two worker processes
≥ 1.6 x one; worker RSS ≤ 512 MiB and flat in audience size (a tenth of the audience,
through a segment, with a fresh worker: peak RSS within 25 %). Planning 1,000,000
deliveries is benchmarked in ``test_planning.py``; here it is only reported.

Where the CPU goes: every process's CPU time is sampled from ``/proc`` during each
phase and summed per role (pool processes, worker parent, beat, stub, PostgreSQL
backends of this database, Redis, this process, everything else on the machine).

The audience is built set-based at the start (the test is transactional: worker
processes must see committed rows, and the tables are flushed afterwards).
``NOTIFYHUB_BENCH_FULL=1`` → 1,000,000 devices.
``NOTIFYHUB_BENCH_DEVICES`` sets any other size (e.g. a quick check);
``NOTIFYHUB_BENCH_BARE_MESSAGES`` (default 20,000) sets the messages per baseline process.
``CELERY_BROKER_URL`` is not used: the benchmark starts its own ``redis-server`` so that
other test runs' queues and caches cannot interfere.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_deliv_bench \\
     CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
     .venv/bin/python -m pytest tests/benchmarks/test_delivery_throughput.py -m benchmark -s \\
     --create-db -p no:randomly
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("NOTIFYHUB_BENCH_FULL", "") not in {"", "0"}
N_DEVICES = int(os.environ.get("NOTIFYHUB_BENCH_DEVICES", 1_000_000 if FULL else 100_000))
SMALL_SHARE = 10  # the flatness check runs on 1 / SMALL_SHARE of the audience
BARE_MESSAGES = int(os.environ.get("NOTIFYHUB_BENCH_BARE_MESSAGES", "20000"))
BATCH = 500

# ---------------------------------------------------------------------------
# B_send: one bare firebase-admin sender (this file run as a script; no Django)
# ---------------------------------------------------------------------------


def _bare_message(messaging: Any, *, token: str, i: int, now: float) -> Any:
    """A message shaped like ``delivery.fcm.fcm_message`` builds for the benchmark's campaign."""
    collapse = "nh-1"
    built = messaging.Message(
        notification=messaging.Notification(
            title=f"Hola Ana {i % 500}, ofertas para ti", body=f"En City {i % 500}."
        ),
        data={
            "screen": "offers",
            "nh_delivery_id": str(i),
            "nh_click_action": "url",
            "nh_click_url": "http://localhost:8000/r/" + "x" * 96 + f"{i:08d}/",
        },
        android=messaging.AndroidConfig(
            collapse_key=collapse,
            priority="normal",
            ttl=86_400,
            notification=messaging.AndroidNotification(channel_id="offers", tag=collapse),
        ),
        apns=messaging.APNSConfig(
            headers={
                "apns-priority": "5",
                "apns-expiration": str(int(now) + 86_400),
                "apns-collapse-id": collapse,
            },
            payload=messaging.APNSPayload(aps=messaging.Aps(sound="default")),
        ),
        webpush=messaging.WebpushConfig(
            headers={"TTL": "86400", "Urgency": "normal", "Topic": collapse},
            notification=messaging.WebpushNotification(tag=collapse),
        ),
        fcm_options=messaging.FCMOptions(analytics_label="campaign-1"),
    )
    built.token = token  # as delivery.fcm does: a registration token, without the fid warning
    return built


def bare_sender(url: str, credentials_path: str, count: int, tuned: bool, tag: str) -> None:
    """Initialise, say ``ready``, wait for ``go`` on stdin, send ``count`` messages, print JSON."""
    import firebase_admin
    import requests.adapters
    from firebase_admin import credentials, messaging
    from urllib3.util.retry import Retry

    messaging._MessagingService.FCM_URL = f"{url}/v1/projects/{{0}}/messages:send"
    app = firebase_admin.initialize_app(credentials.Certificate(credentials_path), name=f"bare-{tag}")
    if tuned:  # the engine's adapter (delivery.fcm): keep-alive pool of 100, only connects retried
        retry = Retry(total=None, connect=1, read=0, status=0, other=0, redirect=0, status_forcelist=())
        messaging._get_messaging_service(app)._client.session.mount(
            f"{url}/",
            requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=100, pool_block=True, max_retries=retry
            ),
        )
    now = time.time()
    warm = messaging.send_each([_bare_message(messaging, token=f"bare-{tag}-warm", i=0, now=now)], app=app)
    assert warm.success_count == 1, warm.responses[0].exception
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.time(), time.process_time()
    sent = 0
    for start in range(0, count, BATCH):
        batch = [
            _bare_message(messaging, token=f"bare-{tag}-{i}", i=i, now=now)
            for i in range(start, min(count, start + BATCH))
        ]
        sent += messaging.send_each(batch, app=app).success_count
    ended = time.time()
    print(json.dumps({"sent": sent, "started": started, "ended": ended, "cpu": time.process_time() - cpu}))


if __name__ == "__main__":
    _, mode, *args = sys.argv
    assert mode == "bare", mode
    bare_sender(args[0], args[1], int(args[2]), args[3] == "1", args[4])
    sys.exit(0)


# ---------------------------------------------------------------------------
# The benchmark (pytest)
# ---------------------------------------------------------------------------

import datetime as dt  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import ExitStack  # noqa: E402

import pytest  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.benchmarks import proc_stats  # noqa: E402
from tests.benchmarks.harness import record  # noqa: E402
from tests.fcm import FcmStubHandle, fcm_stub_process  # noqa: E402
from tests.processes import (  # noqa: E402
    Managed,
    Processes,
    RedisServer,
    celery_environ,
    test_database_url,
)
from tests.services import require  # noqa: E402

PREFIX = "deliv-"
TARGET_E2E_VS_BARE = 0.7
TARGET_SCALING = 1.6
TARGET_RSS_MIB = 512.0
FLAT_RSS_RATIO = 1.25
DISPATCH_SECONDS = 1
FIRST_NAMES = "ARRAY['Ana', 'Ben', 'Chloé', 'Dmitri', 'Eva', 'Farid', 'Greta', 'Hugo']"
ZONES = "ARRAY['UTC', 'Europe/Madrid', 'America/New_York', 'Asia/Kolkata']"

BUILD = [
    "TRUNCATE delivery_delivery, delivery_outboxmessage, audiences_event, audiences_device, "
    "audiences_segmentmember, audiences_topicpreference, audiences_consentrecord, audiences_subscriber "
    "RESTART IDENTITY CASCADE",
    # Every SMALL_SHARE-th subscriber lives in Iceland: the small audience's segment.
    f"""
    INSERT INTO audiences_subscriber (external_id, email, first_name, last_name, language, timezone,
        country, city, interests, attributes, last_seen_at, sessions_30d, purchase_count, total_spent,
        last_purchase_at, push_opt_in, frequency_limit, created_at, updated_at)
    SELECT '{PREFIX}' || i, '', ({FIRST_NAMES})[1 + i % 8], 'User',
        (ARRAY['en', 'es'])[1 + (i / {SMALL_SHARE}) % 2],
        ({ZONES})[1 + (i / 2) % 4], CASE WHEN i % {SMALL_SHARE} = 0 THEN 'IS' ELSE 'DE' END,
        'City ' || (i % 500), '[]'::jsonb, '{{}}'::jsonb, now(), 0, 0, 0, NULL, true, 'none', now(), now()
    FROM generate_series(1, {N_DEVICES}) AS i
    """,
    """
    INSERT INTO audiences_device (subscriber_id, token, platform, is_active, is_test, invalidated_at,
        invalidation_reason, app_version, locale, last_seen_at, created_at)
    SELECT id, 'deliv-token-' || id, (ARRAY['android', 'ios', 'web'])[1 + id % 3], true, false, NULL, '',
        '1.0', '', now(), now()
    FROM audiences_subscriber
    """,
    "VACUUM ANALYZE audiences_subscriber",
    "VACUUM ANALYZE audiences_device",
]


def _fingerprint() -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM audiences_subscriber WHERE external_id LIKE %s),"
            " (SELECT count(*) FROM audiences_subscriber),"
            " (SELECT count(*) FROM audiences_device WHERE is_active)",
            [PREFIX + "%"],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@pytest.fixture(scope="module")
def audience(django_db_setup: None, django_db_blocker: Any) -> dict[str, float]:
    """N_DEVICES subscribers with one active device each, committed (the workers must see them)."""
    with django_db_blocker.unblock():
        require(connection.vendor == "postgresql", "the delivery benchmark needs PostgreSQL (DATABASE_URL)")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for statement in BUILD:
                cursor.execute(statement)
        assert _fingerprint() == (N_DEVICES,) * 3
        return {"audience build seconds": time.perf_counter() - started}


# --- the baseline ---------------------------------------------------------------------


def _bare(
    stub: FcmStubHandle, *, processes: int, tuned: bool, classify: Callable[..., str]
) -> dict[str, Any]:
    """B_send with ``processes`` bare senders started together; aggregate msgs/s over the common span."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "NOTIFYHUB_"))}
    tag = f"{'tuned' if tuned else 'bare'}{processes}"
    senders = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "bare",
                stub.url,
                str(stub.credentials_path),
                str(BARE_MESSAGES),
                "1" if tuned else "0",
                f"{tag}-{k}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
        for k in range(processes)
    ]
    try:
        for sender in senders:
            assert sender.stdout is not None and sender.stdout.readline().strip() == "ready"
        stub.reset()
        sampler = proc_stats.CpuSampler(classify).start()
        for sender in senders:
            assert sender.stdin is not None
            sender.stdin.write("go\n")
            sender.stdin.flush()
        results = [
            json.loads(sender.communicate(timeout=600)[0].strip().splitlines()[-1]) for sender in senders
        ]
        cpu = sampler.stop()
    finally:
        for sender in senders:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
    sent = sum(r["sent"] for r in results)
    span = max(r["ended"] for r in results) - min(r["started"] for r in results)
    stats = stub.stats()
    assert sent == processes * BARE_MESSAGES == stats["accepted"], (sent, stats)
    return {
        "rate": sent / span,
        "per_process": sent / span / processes,
        "seconds": span,
        "sender_cpu_per_msg_ms": 1000 * sum(r["cpu"] for r in results) / sent,
        "cpu": cpu,
        "machine": sampler.machine,
    }


# --- one end-to-end phase ---------------------------------------------------------------


def _campaign(*, small: bool) -> Any:
    from audiences.models import Segment
    from campaigns.models import Campaign
    from tests.factories import CampaignFactory, TopicFactory, VariantFactory

    topic = TopicFactory(slug=f"bench-offers-{'small' if small else 'all'}", default_opt_in=True)
    # The campaign's own quiet hours: one minute half a day away, so quiet hours are checked
    # (planning and sending) but never hold anyone back, whenever the benchmark runs.
    quiet = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).time().replace(second=0, microsecond=0)
    campaign = CampaignFactory(
        topic=topic,
        status=Campaign.Status.RUNNING,
        ab_mode=Campaign.AbMode.SPLIT,
        control_percent=0,
        quiet_hours_start=quiet,
        quiet_hours_end=(dt.datetime.combine(dt.date(2000, 1, 1), quiet) + dt.timedelta(minutes=1)).time(),
    )
    for name, greeting in (("A", ("Hi", "Hola")), ("B", ("Hey", "Oye"))):
        VariantFactory(
            campaign=campaign,
            name=name,
            title_en=greeting[0] + " {{ subscriber.first_name|default:'there' }}, offers for you",
            body_en="New in {{ subscriber.city|default:'your city' }}.",
            title_es=greeting[1] + " {{ subscriber.first_name|default:'amigo' }}, ofertas para ti",
            body_es="Novedades en {{ subscriber.city|default:'tu ciudad' }}.",
            click_action="url",
            click_url="https://shop.example.com/offers",
            data={"screen": "offers"},
            android_channel_id="offers",
            ios_sound="default",
        )
    if small:
        segment = Segment.objects.create(
            name="bench: Iceland",
            rules={
                "match": "all",
                "conditions": [{"field": "country", "op": "in", "value": ["IS"]}],
                "exclude": {"match": "any", "conditions": []},
            },
        )
        campaign.include_segments.add(segment)
    return campaign


def _log_sample(stub: FcmStubHandle, limit: int = 400) -> list[dict[str, Any]]:
    page: dict[str, Any] = stub.client._call("GET", f"/__log?since=0&limit={limit}")
    return [entry["message"] for entry in page["entries"]]


def _phase(
    *,
    label: str,
    workers: int,
    small: bool,
    stub: FcmStubHandle,
    env: dict[str, str],
    directory: Path,
    classify: Callable[[int, int, str, dict[str, Any]], str],
) -> dict[str, Any]:
    """Plan and send one campaign with a fresh worker (``workers`` pool processes) and beat."""
    from delivery.models import Delivery, Heartbeat, Run
    from delivery.planning import run_plan

    D = Delivery.Status
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE delivery_delivery, delivery_outboxmessage")
    campaign = _campaign(small=small)
    expected = N_DEVICES // SMALL_SHARE if small else N_DEVICES
    run = Run.objects.create(campaign=campaign, occurrence=timezone.now())
    directory.mkdir()
    roles: dict[str, Any] = {}
    with Processes(directory, env) as procs:
        started = timezone.now()
        worker = procs.start_worker("worker", concurrency=workers, pool="prefork")
        beat = procs.start_beat("beat")
        roles.update(worker=worker.pid, beat=beat.pid)
        procs.wait_for("the worker", lambda: " ready." in worker.text(), 60)
        procs.wait_for(
            "a heartbeat (beat → broker → worker → database)",
            lambda: Heartbeat.objects.filter(beat_at__gt=started).exists(),
            60,
        )
        pool = proc_stats.children(worker.pid)
        assert len(pool) == workers, pool
        roles["pool"] = set(pool)

        stub.reset()
        sampler = proc_stats.CpuSampler(lambda pid, ppid, cmd: classify(pid, ppid, cmd, roles)).start()
        t0 = time.perf_counter()
        planned = run_plan(run_id=run.pk)
        t_planned = time.perf_counter()
        open_rows = Delivery.objects.filter(run=run, status__in=[D.QUEUED, D.SENDING])
        queued = Delivery.objects.filter(run=run, status=D.QUEUED)
        t_all_claimed = None
        deadline = t_planned + 300 + expected / 50
        while open_rows.exists():
            if t_all_claimed is None and not queued.exists():
                t_all_claimed = time.perf_counter()
            procs.check_alive(f"{label}: the run to finish")
            if time.perf_counter() > deadline:
                pytest.fail(f"{label}: not finished in time\n{procs.output()}", pytrace=False)
            time.sleep(0.25)
        t_end = time.perf_counter()
        cpu = sampler.stop()
        rss = {pid: proc_stats.peak_rss_mib(pid) or 0.0 for pid in pool}
        parent_rss = proc_stats.peak_rss_mib(worker.pid) or 0.0
        procs.wait_for(
            "dispatch to close the run",
            lambda: Run.objects.get(pk=run.pk).status != Run.Status.SENDING,
            DISPATCH_SECONDS * 10 + 10,
        )
        tasks = _task_seconds(worker.text())
        _show_worker_errors(worker)

    run.refresh_from_db()
    statuses = dict(Delivery.objects.filter(run=run).values_list("status").annotate(n=Count("pk")).order_by())
    variants = dict(
        Delivery.objects.filter(run=run).values_list("variant__name").annotate(n=Count("pk")).order_by()
    )
    stats = stub.stats()
    sample = _log_sample(stub)
    stub.reset()
    sent = statuses.get(D.SENT, 0)
    return {
        "label": label,
        "workers": workers,
        "expected": expected,
        "planned": planned,
        "sent": sent,
        "statuses": statuses,
        "variants": variants,
        "run_status": run.status,
        "stub": stats,
        "sample": sample,
        "plan_seconds": t_planned - t0,
        "send_seconds": t_end - t_planned,
        "seconds": t_end - t0,
        "rate": sent / (t_end - t0),
        "per_worker": sent / (t_end - t0) / workers,
        "send_rate": sent / (t_end - t_planned),
        "rss": rss,
        "parent_rss": parent_rss,
        "cpu": cpu,
        "machine": sampler.machine,
        "tasks": tasks,
        # How far dispatch ran ahead of the senders: every row claimed after this long.
        "all_claimed_seconds": (t_all_claimed or t_end) - t_planned,
        # Share of the send phase the pool processes spent inside send_batch tasks.
        "send_task_busy": tasks["send_batch"][1] / (t_end - t_planned) / workers,
    }


TASK_LINE = re.compile(r"Task delivery\.tasks\.(\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")


def _task_seconds(log: str) -> dict[str, tuple[int, float]]:
    """(count, total runtime in seconds) per task name, from the worker's "succeeded in" lines."""
    totals: dict[str, tuple[int, float]] = {"send_batch": (0, 0.0), "dispatch_due": (0, 0.0)}
    for name, seconds in TASK_LINE.findall(log):
        count, total = totals.get(name, (0, 0.0))
        totals[name] = (count + 1, total + float(seconds))
    return totals


def _pool_cpu_ms(result: dict[str, Any]) -> float:
    return 1000 * result["cpu"].get("worker pool processes", 0.0) / result["sent"]


def _show_worker_errors(worker: Managed) -> None:
    errors = [line for line in worker.text().splitlines() if "ERROR" in line or "Traceback" in line]
    if errors:
        print(f"worker log has {len(errors)} error lines; first: {errors[:5]}")


def _check_phase(result: dict[str, Any]) -> None:
    """Nothing lost, nothing twice, every message personalized and from one of the two variants."""
    label, expected = result["label"], result["expected"]
    assert result["planned"] == expected, (label, result["planned"])
    assert result["statuses"] == {"sent": expected}, (label, result["statuses"])
    assert result["run_status"] == "completed", (label, result["run_status"])
    stats = result["stub"]
    assert stats["accepted"] == expected and stats["duplicates"] == 0 and stats["requests"] == expected, (
        label,
        stats,
    )
    counts = list(result["variants"].values())
    assert set(result["variants"]) == {"A", "B"} and min(counts) > 0.45 * expected, (
        label,
        result["variants"],
    )
    titles = [m["notification"]["title"] for m in result["sample"]]
    assert titles and all(t.split(" ")[0] in {"Hi", "Hola", "Hey", "Oye"} for t in titles), titles[:5]
    assert not any("{{" in t or "there," in t or "amigo," in t for t in titles), titles[:5]
    assert {t.split(" ")[0] for t in titles} >= {"Hi", "Hola", "Hey", "Oye"}, titles[:20]
    assert all(m["android"]["collapse_key"].startswith("nh-") for m in result["sample"])


# --- CPU accounting ---------------------------------------------------------------------


def _classifier(*, stub_pid: int, redis_pid: int, database: str) -> Callable[..., str]:
    me = os.getpid()

    def classify(pid: int, ppid: int, cmd: str, roles: dict[str, Any] | None = None) -> str:
        roles = roles or {}
        if pid in roles.get("pool", ()) or (roles.get("worker") and ppid == roles["worker"]):
            return "worker pool processes"
        if pid == roles.get("worker"):
            return "worker parent (consumer)"
        if pid == roles.get("beat"):
            return "beat"
        if pid == stub_pid:
            return "FCM stub"
        if pid == redis_pid:
            return "redis (broker, cache)"
        if pid == me:
            return "benchmark process (planning, polling)"
        if " bare " in f" {cmd} " and "test_delivery_throughput" in cmd:
            return "bare senders"
        if cmd.startswith("postgres:") and f" {database} " in f" {cmd} ":
            return "postgres: this database"
        if cmd.startswith(("postgres", "/usr/lib/postgresql")):
            return "postgres: other (background, other databases)"
        return "other processes (not this benchmark)"

    return classify


def _cpu_note(cpu: dict[str, float], machine: tuple[float, float], seconds: float) -> str:
    busy, total = machine
    parts = [f"{name} {value:.1f}s" for name, value in cpu.items() if value >= 0.05]
    return (
        f"machine busy {busy / total:.0%} of {total / seconds:.1f} cores over {seconds:.0f}s; "
        + ", ".join(parts)
    )


# --- the test -------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[FcmStubHandle, RedisServer, int]]:
    require(RedisServer.available(), "redis-server is not installed")
    with ExitStack() as stack:
        stub = stack.enter_context(fcm_stub_process(tmp_path))
        stub_pid = next(
            pid
            for pid in proc_stats.pids()
            if "delivery.fcm_stub" in (cmd := proc_stats.cmdline(pid)) and str(stub.credentials_path) in cmd
        )
        redis = stack.enter_context(RedisServer(tmp_path))
        assert redis.popen is not None
        yield stub, redis, stub_pid


# Transactional: worker and beat processes must see committed rows.
@pytest.mark.django_db(transaction=True)
def test_delivery_throughput_end_to_end(
    audience: dict[str, float], stack: tuple[FcmStubHandle, RedisServer, int], tmp_path: Path
) -> None:
    stub, redis, stub_pid = stack
    assert redis.popen is not None
    database = connection.settings_dict["NAME"]
    base = _classifier(stub_pid=stub_pid, redis_pid=redis.popen.pid, database=database)
    env = celery_environ(
        tmp_path,
        broker_url=redis.url(0),
        database_url=test_database_url(),
        CACHE_URL=redis.url(1),
        NOTIFYHUB_DISPATCH_SECONDS=str(DISPATCH_SECONDS),
        **stub.environ(),
    )
    try:
        small = _phase(
            label="small audience, 1 worker process", workers=1, small=True, stub=stub, env=env,
            directory=tmp_path / "small", classify=base,
        )  # fmt: skip
        bare1 = _bare(stub, processes=1, tuned=False, classify=base)
        tuned1 = _bare(stub, processes=1, tuned=True, classify=base)
        one = _phase(
            label="1 worker process", workers=1, small=False, stub=stub, env=env,
            directory=tmp_path / "one", classify=base,
        )  # fmt: skip
        bare2 = _bare(stub, processes=2, tuned=False, classify=base)
        tuned2 = _bare(stub, processes=2, tuned=True, classify=base)
        two = _phase(
            label="2 worker processes", workers=2, small=False, stub=stub, env=env,
            directory=tmp_path / "two", classify=base,
        )  # fmt: skip
    finally:
        _cleanup()

    for result in (small, one, two):
        _check_phase(result)
    scaling = two["rate"] / one["rate"]
    rss_small = max(small["rss"].values())
    rss_big = max(max(one["rss"].values()), max(two["rss"].values()))
    metrics = {
        "e2e msgs/s, 1 worker process": one["rate"],
        "e2e msgs/s, 2 worker processes": two["rate"],
        "e2e msgs/s per worker process, 2 workers": two["per_worker"],
        "e2e / B_send, 1 process": one["per_worker"] / bare1["per_process"],
        "e2e / B_send, 2 processes": two["per_worker"] / bare2["per_process"],
        "e2e / B_send(engine adapter), 1 process": one["per_worker"] / tuned1["per_process"],
        "e2e / B_send(engine adapter), 2 processes": two["per_worker"] / tuned2["per_process"],
        "2 workers / 1 worker": scaling,
        "send phase msgs/s, 1 worker (after planning)": one["send_rate"],
        "send phase msgs/s, 2 workers (after planning)": two["send_rate"],
        f"run_plan seconds ({N_DEVICES:,} rows, 1 worker phase)": one["plan_seconds"],
        f"run_plan seconds ({N_DEVICES:,} rows, 2 worker phase)": two["plan_seconds"],
        f"worker peak RSS MiB, {N_DEVICES // SMALL_SHARE:,} devices": rss_small,
        f"worker peak RSS MiB, {N_DEVICES:,} devices": rss_big,
        "worker parent peak RSS MiB": max(one["parent_rss"], two["parent_rss"]),
        f"e2e msgs/s, {N_DEVICES // SMALL_SHARE:,} devices, 1 worker": small["rate"],
        "pool processes busy in send_batch, 1 worker": one["send_task_busy"],
        "pool processes busy in send_batch, 2 workers": two["send_task_busy"],
        # Contention-free view of the same comparison: CPU time per message of the bare
        # senders ÷ that of the pool processes (what the ratio would be if each had a core).
        "CPU per message, bare sender / pool process, 1 worker": bare1["sender_cpu_per_msg_ms"]
        / _pool_cpu_ms(one),
        "CPU per message, bare sender / pool process, 2 workers": bare2["sender_cpu_per_msg_ms"]
        / _pool_cpu_ms(two),
        "seconds until every row was claimed, 1 worker": one["all_claimed_seconds"],
        "seconds until every row was claimed, 2 workers": two["all_claimed_seconds"],
    }
    baseline = {
        "B_send msgs/s, 1 process (bare SDK)": bare1["rate"],
        "B_send msgs/s, 2 processes (bare SDK)": bare2["rate"],
        "B_send msgs/s per process, 2 processes": bare2["per_process"],
        "B_send(engine adapter) msgs/s, 1 process": tuned1["rate"],
        "B_send(engine adapter) msgs/s, 2 processes": tuned2["rate"],
        "B_send 2 / 1 processes": bare2["rate"] / bare1["rate"],
        "bare sender CPU ms per message": bare1["sender_cpu_per_msg_ms"],
        **audience,
    }
    per_msg = {
        name: {role: 1000 * seconds / result["sent"] for role, seconds in result["cpu"].items()}
        for name, result in (("1 worker", one), ("2 workers", two))
    }
    notes = (
        f"{N_DEVICES:,} devices, 2 variants (personalized title, en/es), prefork pool, beat every "
        f"{DISPATCH_SECONDS}s, private Redis broker+cache, stub in its own process; {os.cpu_count()} CPUs. "
        f"CPU 1 worker: {_cpu_note(one['cpu'], one['machine'], one['seconds'])}. "
        f"CPU 2 workers: {_cpu_note(two['cpu'], two['machine'], two['seconds'])}. "
        f"CPU B_send 1: {_cpu_note(bare1['cpu'], bare1['machine'], bare1['seconds'])}. "
        f"CPU B_send 2: {_cpu_note(bare2['cpu'], bare2['machine'], bare2['seconds'])}. "
        "CPU ms per message: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{role} {ms:.2f}" for role, ms in roles.items() if ms >= 0.01)
            for name, roles in per_msg.items()
        )
        + f". Tasks (count, seconds) 1 worker: {one['tasks']}; 2 workers: {two['tasks']}."
    )
    record("delivery end to end vs bare firebase-admin", metrics=metrics, baseline=baseline, notes=notes)

    missed = []
    for name, result, bare in (("1 worker", one, bare1), ("2 workers", two, bare2)):
        if result["per_worker"] < TARGET_E2E_VS_BARE * bare["per_process"]:
            missed.append(
                f"{name}: {result['per_worker']:,.0f} msgs/s per worker process < "
                f"{TARGET_E2E_VS_BARE} x B_send {bare['per_process']:,.0f}"
            )
    if scaling < TARGET_SCALING:
        missed.append(f"2 workers / 1 worker = {scaling:.2f} < {TARGET_SCALING}")
    if rss_big > TARGET_RSS_MIB:
        missed.append(f"worker peak RSS {rss_big:.0f} MiB > {TARGET_RSS_MIB:.0f} MiB")
    if rss_big > FLAT_RSS_RATIO * rss_small:
        missed.append(
            f"worker RSS not flat: {rss_small:.0f} MiB → {rss_big:.0f} MiB (x {rss_big / rss_small:.2f})"
        )
    assert not missed, "; ".join(missed)


def _cleanup() -> None:
    """Leave the audience (reused with --reuse-db), drop everything the phases created."""
    from audiences.models import Segment, Topic
    from campaigns.models import Campaign
    from delivery.models import Run

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE delivery_delivery, delivery_outboxmessage")
    Run.objects.all().delete()
    for campaign in Campaign.objects.all():
        campaign.variants.all().delete()
        campaign.delete()
    Topic.objects.filter(slug__startswith="bench-offers-").delete()
    Segment.objects.filter(name__startswith="bench: ").delete()
