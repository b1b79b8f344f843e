"""Event ingestion through the real API: gunicorn (as in the Procfile) on PostgreSQL.

The benchmark prepares a PostgreSQL test database (subscribers, an API key), starts
``gunicorn notifyhub.wsgi`` with 2 sync workers on a free loopback port with
production-like settings (DEBUG off, Redis cache when reachable), and drives it from
a second process — this file run as a script — with a few concurrent threads, each
sending batches of 100 events with fresh idempotency keys for a fixed time.

Baselines, measured in the same run on the same server and machine:

- a trivial authenticated endpoint (``GET /api/v1/preference-url``: key lookup, rate
  limit, one indexed SELECT) under the same load: what the HTTP stack alone allows;
- the raw ``bulk_create`` rate of the same 100-event batches in this process: what the
  database alone allows.

Target (issue #3): ≥ 2,000 events/s, zero errors. Run with::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_api \\
      .venv/bin/python -m pytest tests/benchmarks/test_event_ingestion.py -m benchmark -s --create-db

``NOTIFYHUB_BENCH_SECONDS`` (default 15) sets each phase's duration.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BATCH = 100
THREADS = 4
N_SUBSCRIBERS = 10_000
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------
# The load generator (this file run as a script: a separate process)
# ---------------------------------------------------------------------------


def _batch(run: str, thread: int, seq: int, external_ids: list[str]) -> bytes:
    events = []
    for i in range(BATCH):
        n = seq * BATCH + i
        kind = n % 10
        name, props = (
            ("purchase", {"amount": f"{(n % 50) + 0.99:.2f}", "currency": "EUR"})
            if kind == 0
            else ("session_start", {})
            if kind < 3
            else ("add_to_cart", {"sku": f"SKU-{n % 300}"})
            if kind == 3
            else ("screen_view", {"screen": f"s{n % 12}"})
        )
        events.append(
            {
                "external_id": external_ids[(thread * 7919 + n * 31) % len(external_ids)],
                "name": name,
                "idempotency_key": f"{run}-{thread}-{n}",
                "properties": props,
            }
        )
    return json.dumps({"events": events}).encode()


def load(port: int, key: str, mode: str, seconds: float, external_ids: list[str]) -> dict[str, Any]:
    run = secrets.token_hex(4)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    stats: dict[str, Any] = {"requests": 0, "events": 0, "recorded": 0, "errors": [], "latencies": []}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(thread: int) -> None:
        seq = 0
        while time.perf_counter() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            try:
                if mode == "events":
                    conn.request("POST", "/api/v1/events", _batch(run, thread, seq, external_ids), headers)
                else:
                    path = f"/api/v1/preference-url?external_id={external_ids[seq % len(external_ids)]}"
                    conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - started
                with lock:
                    stats["requests"] += 1
                    stats["latencies"].append(elapsed)
                    if response.status != 200:
                        stats["errors"].append(f"{response.status}: {body[:200]!r}")
                    elif mode == "events":
                        stats["events"] += BATCH
                        stats["recorded"] += json.loads(body)["recorded"]
            except OSError as exc:
                with lock:
                    stats["errors"].append(repr(exc))
            finally:
                conn.close()
            seq += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = time.perf_counter() - started
    latencies = sorted(stats.pop("latencies"))
    stats["p50_ms"] = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    stats["p95_ms"] = latencies[int(len(latencies) * 0.95)] * 1000 if latencies else 0.0
    return stats


if __name__ == "__main__":
    spec = json.loads(sys.stdin.read())
    print(json.dumps(load(spec["port"], spec["key"], spec["mode"], spec["seconds"], spec["external_ids"])))
    sys.exit(0)


# ---------------------------------------------------------------------------
# The benchmark (pytest)
# ---------------------------------------------------------------------------

from decimal import Decimal  # noqa: E402

import pytest  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402
from django.utils import timezone  # noqa: E402

from audiences.models import Event, Subscriber  # noqa: E402
from audiences.services.api_keys import api_key_create  # noqa: E402
from tests.benchmarks.harness import record  # noqa: E402
from tests.services import REDIS_URL, _port_open, require_postgres  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _drive(port: int, key: str, mode: str, seconds: float, external_ids: list[str]) -> dict[str, Any]:
    spec = json.dumps(
        {"port": port, "key": key, "mode": mode, "seconds": seconds, "external_ids": external_ids}
    )
    done = subprocess.run(
        [sys.executable, __file__],
        input=spec,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Any:
    require_postgres()
    if connection.vendor != "postgresql":
        pytest.skip("run with DATABASE_URL=postgres://… (the benchmark measures the production database)")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFYHUB_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="notifyhub.settings",
        DATABASE_URL=_database_url(),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        NOTIFYHUB_VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="WARNING",
        CACHE_URL=REDIS_URL if _port_open(REDIS_URL, 6379) else f"filecache://{tmp_path / 'cache'}",
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [
            str(gunicorn),
            "notifyhub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "60",
            "--no-control-socket",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gunicorn.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{(tmp_path / 'gunicorn.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield port, env["CACHE_URL"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_event_ingestion_through_the_api(server: tuple[int, str]) -> None:
    port, cache_url = server
    seconds = float(os.environ.get("NOTIFYHUB_BENCH_SECONDS", "15"))
    Subscriber.objects.bulk_create(
        [Subscriber(external_id=f"bench-{i:05d}") for i in range(N_SUBSCRIBERS)], batch_size=2_000
    )
    external_ids = [f"bench-{i:05d}" for i in range(N_SUBSCRIBERS)]
    key = api_key_create(name="benchmark", rate_limit_per_minute=10_000_000).plaintext

    _drive(port, key, "events", 2, external_ids)  # warm-up: connections, imports, caches
    warmup_events = Event.objects.count()

    events = _drive(port, key, "events", seconds, external_ids)
    trivial = _drive(port, key, "trivial", seconds, external_ids)

    # Raw bulk insert of the same batches, in this process: the database's own ceiling.
    batches = [json.loads(_batch("raw", 9, s, external_ids))["events"] for s in range(100)]
    ids = dict(Subscriber.objects.values_list("external_id", "pk"))
    started = time.perf_counter()
    for batch in batches:
        now = timezone.now()
        Event.objects.bulk_create(
            [
                Event(
                    subscriber_id=ids[e["external_id"]],
                    name=e["name"],
                    properties=e["properties"],
                    occurred_at=now,
                    idempotency_key=e["idempotency_key"],
                )
                for e in batch
            ]
        )
    raw_rate = len(batches) * BATCH / (time.perf_counter() - started)

    assert events["errors"] == [], events["errors"][:5]
    assert trivial["errors"] == [], trivial["errors"][:5]
    api_rate = events["events"] / events["seconds"]
    request_rate = events["requests"] / events["seconds"]
    trivial_rate = trivial["requests"] / trivial["seconds"]

    # Everything sent was stored exactly once, and the aggregates add up under concurrency.
    api_events = Event.objects.exclude(idempotency_key__startswith="raw-")
    assert api_events.count() == warmup_events + events["recorded"] == warmup_events + events["events"]
    purchases = api_events.filter(name="purchase")
    totals = Subscriber.objects.aggregate(n=Sum("purchase_count"), spent=Sum("total_spent"))
    assert totals["n"] == purchases.count()
    assert totals["spent"] == sum(Decimal(p) for p in purchases.values_list("properties__amount", flat=True))
    sessions = api_events.filter(name="session_start").aggregate(n=Count("pk"))["n"]
    assert Subscriber.objects.aggregate(n=Sum("sessions_30d"))["n"] == sessions

    record(
        "event_ingestion_api",
        metrics={
            "events_per_s": api_rate,
            "requests_per_s": request_rate,
            "p50_ms": events["p50_ms"],
            "p95_ms": events["p95_ms"],
            "events_total": float(events["events"]),
        },
        baseline={
            "trivial_auth_requests_per_s": trivial_rate,
            "api_requests_vs_trivial": request_rate / trivial_rate,
            "raw_bulk_insert_events_per_s": raw_rate,
            "api_events_vs_raw_insert": api_rate / raw_rate,
        },
        notes=(
            f"gunicorn 2 sync workers, {THREADS} client threads in a second process, batches of {BATCH}, "
            f"{seconds:.0f} s per phase, {N_SUBSCRIBERS:,} subscribers, cache {cache_url.split(':')[0]}, "
            f"{os.cpu_count()} CPUs"
        ),
    )
    assert api_rate >= 2_000, f"{api_rate:,.0f} events/s is below the 2,000 events/s target"
