"""The preference center under load: gunicorn (as in the Procfile) on PostgreSQL, driven by wrk.

Issue #6's target: under concurrent load from a second process against gunicorn, the
page's GET ≥ 0.5x and its POST ≥ 0.3x the requests/s of a hello-world view on the
same server setup in the same run (B_hello), p95 ≤ 50 ms, zero errors.

Setup: a PostgreSQL test database with N_SUBSCRIBERS subscribers (quiet hours, time
zone, one explicit topic choice) and N_TOPICS translated topics; ``collectstatic``
(the manifest storage production uses), then ``gunicorn notifyhub.wsgi`` with 2 sync
workers, DEBUG off and the Redis cache when reachable (the bad-token throttle reads
it on every request). The server's settings module (``tests.benchmarks.hello_settings``)
is the real one plus ``/bench/hello/`` — a view returning a constant, behind the
same middleware; the product has no such view.

Load: ``wrk`` (a second process; C, so the client is never the bottleneck) with
THREADS threads and CONNECTIONS connections for each phase, in this order: hello,
GET, POST, hello again (B_hello is the mean of the two; their drift is reported).
GET cycles through every subscriber's signed link. POST submits the whole choices
form (CSRF cookie and token taken from a real GET first) and flips one topic each
time a subscriber comes round again, so every POST changes something and appends a
consent record; the response is the 303 back to the page. Afterwards the benchmark
checks that GET wrote nothing and that every POST wrote exactly one record.

Run with::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefs_bench .venv/bin/python -m pytest \\
      tests/benchmarks/test_preference_center.py -m benchmark -s --create-db -p no:randomly

``NOTIFYHUB_BENCH_SECONDS`` (default 15) sets each phase's duration.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import override_settings

from audiences.models import ConsentRecord, Subscriber, Topic, TopicPreference
from audiences.preference_links import make_token, preference_path
from tests.benchmarks.harness import record
from tests.services import REDIS_URL, _port_open, require, require_postgres

N_SUBSCRIBERS = 2_000
N_TOPICS = 5
THREADS = 2
CONNECTIONS = 8
WORKERS = 2
REPO_ROOT = Path(__file__).resolve().parents[2]

# The targets.
GET_VS_HELLO = 0.5
POST_VS_HELLO = 0.3
P95_MS = 50.0

# wrk script: each thread takes its own slice of the links (no two connections on one
# subscriber at a time); POST alternates two bodies per pass over the slice.
WRK_SCRIPT = r"""
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local links = {}
local counter = 0
function init(args)
  mode = args[1]
  local threads = tonumber(args[2])
  for line in io.lines(args[3]) do links[#links + 1] = line end
  per = math.floor(#links / threads)
  first = id * per
  if mode == "post" then
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
    wrk.headers["Cookie"] = "csrftoken=" .. args[4]
    bodies = {args[5], args[6]}
  end
end

function request()
  local i = counter % per
  local pass = math.floor(counter / per)
  counter = counter + 1
  if mode == "hello" then
    return wrk.format("GET", "/bench/hello/")
  end
  local path = links[first + i + 1]
  if mode == "get" then
    return wrk.format("GET", path)
  end
  return wrk.format("POST", path, nil, bodies[(pass % 2) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _population(secret_key: str) -> list[str]:
    """Topics and subscribers; returns each subscriber's page path, signed with the server's key."""
    topics = Topic.objects.bulk_create(
        [
            Topic(
                slug=slug,
                name=name,
                name_en=name,
                name_es=f"{name} (es)",
                description=f"What {name.lower()} are about.",
                description_en=f"What {name.lower()} are about.",
                sort_order=n,
                default_opt_in=n != 4,
            )
            for n, (slug, name) in enumerate(
                [
                    ("offers", "Offers"),
                    ("orders", "Order updates"),
                    ("news", "News"),
                    ("tips", "Tips"),
                    ("events", "Events"),
                ][:N_TOPICS]
            )
        ]
    )
    subscribers = Subscriber.objects.bulk_create(
        [
            Subscriber(
                external_id=f"bench-{i:05d}",
                first_name="Ada",
                language="en",
                timezone="Europe/Berlin",
                quiet_hours_start=dt.time(22),
                quiet_hours_end=dt.time(7),
            )
            for i in range(N_SUBSCRIBERS)
        ],
        batch_size=2_000,
    )
    TopicPreference.objects.bulk_create(
        [TopicPreference(subscriber=s, topic=topics[1], opted_in=True) for s in subscribers], batch_size=2_000
    )
    with override_settings(SECRET_KEY=secret_key):
        return [preference_path(token=make_token(subscriber=s)) for s in subscribers]


def _form_bodies(csrf_token: str) -> tuple[str, str]:
    """The choices form as the page posts it: "offers" off, then on again (one change each)."""

    def body(offers: bool) -> str:
        topics = (["offers"] if offers else []) + ["orders", "news", "tips"]
        fields = [
            ("csrfmiddlewaretoken", csrf_token),
            ("push_opt_in", "on"),
            *[("topics", slug) for slug in topics],
            ("frequency_limit", "none"),
            ("quiet_start", "22:00"),
            ("quiet_end", "07:00"),
            ("timezone", "Europe/Berlin"),
            ("language", "en"),
        ]
        return urlencode(fields)

    return body(False), body(True)


def _csrf(port: int, path: str) -> tuple[str, str]:
    """A real GET of the page: the CSRF cookie and the form's token (reusable with that cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    html = response.read().decode()
    conn.close()
    assert response.status == 200, html[:500]
    cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert cookie and token, "the page has no CSRF cookie or token"
    return cookie[1], token[1]


def _post_once(port: int, path: str, cookie: str, body: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        path,
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie}"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def _wrk(port: int, script: Path, seconds: float, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            "wrk",
            f"--threads={THREADS}",
            f"--connections={CONNECTIONS}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={script}",
            f"http://127.0.0.1:{port}",
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["p50_ms"], result["p95_ms"] = result["p50_us"] / 1000, result["p95_us"] / 1000
    return result


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    require(shutil.which("wrk") is not None, "wrk not found: apt-get install wrk (the load generator)")
    require_postgres()
    if connection.vendor != "postgresql":
        pytest.skip("run with DATABASE_URL=postgres://… (the benchmark measures the production database)")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFYHUB_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.benchmarks.hello_settings",
        DATABASE_URL=_database_url(),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        NOTIFYHUB_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        LOG_LEVEL="WARNING",
        CACHE_URL=REDIS_URL if _port_open(REDIS_URL, 6379) else f"filecache://{tmp_path / 'cache'}",
    )
    # Production serves hashed, compressed static files from the manifest: the page's
    # {% static %} tags need it.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO_ROOT, env=env, check=True
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [
            str(gunicorn),
            "notifyhub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--timeout",
            "60",
            "--no-control-socket",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/hello/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield {"port": port, "secret_key": env["SECRET_KEY"], "cache": env["CACHE_URL"], "log": log}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_preference_center_against_hello_world(server: dict[str, Any], tmp_path: Path) -> None:
    port = server["port"]
    seconds = float(os.environ.get("NOTIFYHUB_BENCH_SECONDS", "15"))
    links = _population(server["secret_key"])
    links_file = tmp_path / "links.txt"
    links_file.write_text("\n".join(links) + "\n")
    script = tmp_path / "load.lua"
    script.write_text(WRK_SCRIPT)

    # The form as a browser posts it, with a real CSRF cookie and token; check it is accepted.
    cookie, token = _csrf(port, links[0])
    body_off, body_on = _form_bodies(token)
    assert _post_once(port, links[0], cookie, body_off) == 303
    assert _post_once(port, links[0], cookie, body_on) == 303
    post_args = ("post", str(THREADS), str(links_file), cookie, body_off, body_on)

    load_before = os.getloadavg()[0]
    for mode in ("hello", "get"):  # warm-up: imports, connections, template caches
        _wrk(port, script, 2, mode, str(THREADS), str(links_file))

    hello_before = _wrk(port, script, seconds, "hello", str(THREADS), str(links_file))
    records = ConsentRecord.objects.count()
    get = _wrk(port, script, seconds, "get", str(THREADS), str(links_file))
    assert ConsentRecord.objects.count() == records, "GET wrote consent records"
    post = _wrk(port, script, seconds, *post_args)
    time.sleep(1)  # let requests wrk stopped waiting for finish
    written = ConsentRecord.objects.count() - records
    hello_after = _wrk(port, script, seconds, "hello", str(THREADS), str(links_file))

    b_hello = (hello_before["rps"] + hello_after["rps"]) / 2
    record(
        "preference_center",
        metrics={
            "get_requests_per_s": get["rps"],
            "get_p50_ms": get["p50_ms"],
            "get_p95_ms": get["p95_ms"],
            "post_requests_per_s": post["rps"],
            "post_p50_ms": post["p50_ms"],
            "post_p95_ms": post["p95_ms"],
            "get_vs_hello": get["rps"] / b_hello,
            "post_vs_hello": post["rps"] / b_hello,
            "consent_records_per_post": written / max(1, post["requests"]),
        },
        baseline={
            "hello_requests_per_s": b_hello,
            "hello_before_requests_per_s": hello_before["rps"],
            "hello_after_requests_per_s": hello_after["rps"],
            "hello_p95_ms": max(hello_before["p95_ms"], hello_after["p95_ms"]),
        },
        notes=(
            f"gunicorn {WORKERS} sync workers, DEBUG off, cache {server['cache'].split(':')[0]}; "
            f"wrk {THREADS} threads / {CONNECTIONS} connections, {seconds:.0f} s per phase; "
            f"{N_SUBSCRIBERS:,} subscribers, {N_TOPICS} topics; {os.cpu_count()} CPUs, "
            f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        ),
    )

    for name, phase in (("hello", hello_before), ("GET", get), ("POST", post), ("hello", hello_after)):
        assert phase["errors"] == 0, f"{name}: {phase}\n{server['log'].read_text()[-3000:]}"
    # Every POST changed one topic and wrote exactly one record (requests wrk gave up
    # on at the end of the phase may still have been saved).
    assert post["requests"] <= written <= post["requests"] + CONNECTIONS
    failures = []
    if get["rps"] < GET_VS_HELLO * b_hello:
        failures.append(f"GET {get['rps']:,.0f} req/s < {GET_VS_HELLO}x B_hello {b_hello:,.0f}")
    if post["rps"] < POST_VS_HELLO * b_hello:
        failures.append(f"POST {post['rps']:,.0f} req/s < {POST_VS_HELLO}x B_hello {b_hello:,.0f}")
    for name, phase in (("GET", get), ("POST", post)):
        if phase["p95_ms"] > P95_MS:
            failures.append(f"{name} p95 {phase['p95_ms']:.1f} ms > {P95_MS:.0f} ms")
    assert not failures, "; ".join(failures)
