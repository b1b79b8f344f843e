"""Smoke test of what ``make run`` starts: web + worker + beat under honcho.

Each variant starts the three Procfile processes the way ``make run`` does (honcho,
the virtualenv's ``bin`` first on ``PATH``), then checks what a user would see: the
admin login page answers, a task makes the round trip through the broker, a worker
and the result backend, beat keeps the heartbeat ticking, and Ctrl-C stops
everything without leaving a process behind.

- ``embedded``: the defaults of ``make run`` — a SQLite file and kombu's
  ``filesystem://`` broker under a temporary ``NOTIFYHUB_VAR_DIR``, ``DEBUG=true``.
  Any ``DATABASE_URL``/``CELERY_*`` that CI exports is removed from the children's
  environment, so this variant tests the embedded defaults even in CI.
- ``production-like``: a fresh PostgreSQL database, Redis as broker and result
  backend, ``DEBUG=false`` with a real secret key and collected static files.
  Skipped locally without PostgreSQL/Redis, failed with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import redis
from psycopg import sql

from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# The interpreter running the suite is the project's virtualenv (``make test`` runs
# ``.venv/bin/python -m pytest``), so its bin dir is the one ``make run`` puts first.
VENV_BIN = Path(sys.executable).parent
PYTHON = str(VENV_BIN / "python")

HEARTBEAT_NAME = "beat-worker"  # delivery.selectors.HEARTBEAT_NAME
BEAT_TASK_NAME = "notifyhub-heartbeat"  # settings.CELERY_BEAT_SCHEDULE
SMOKE_REDIS_DB = 14

# Environment variables that configure the app (settings, the Celery CLI, the
# Procfile). They are removed from the children's environment so that only what
# each variant sets explicitly applies: the suite's own settings (tests.settings,
# its test SECRET_KEY) or CI's PostgreSQL/Redis must not leak into ``make run``.
_CONFIG_VARS = {
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "CACHE_URL",
    "CSRF_TRUSTED_ORIGINS",
    "CONN_MAX_AGE",
    "LOG_LEVEL",
    "FIREBASE_CREDENTIALS",
    "FCM_ENDPOINT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "PORT",
    "HOST",
    "WEB_CONCURRENCY",
    "WORKER_CONCURRENCY",
}
_CONFIG_PREFIXES = ("CELERY_", "NOTIFYHUB_")
# Every process of one run carries this variable (children inherit it), which is how
# the test finds leftovers without psutil: it scans /proc/<pid>/environ.
MARKER_VAR = "NOTIFYHUB_SMOKE_RUN_ID"

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Stack:
    """How to run and inspect one variant."""

    env: dict[str, str]
    debug: bool
    heartbeat_count: Callable[[], int | None]
    beat_task_last_run: Callable[[], tuple[bool, object]]


# ---------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------


def _base_env(tmp_path: Path, run_id: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _CONFIG_VARS and not key.startswith(_CONFIG_PREFIXES)
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}",
        NOTIFYHUB_VAR_DIR=str(tmp_path / "var"),
        NOTIFYHUB_HEARTBEAT_SECONDS="1",
        PYTHONUNBUFFERED="1",
        **{MARKER_VAR: run_id},
    )
    return env


def _sqlite_reader(db_file: Path) -> tuple[Callable[[], int | None], Callable[[], tuple[bool, object]]]:
    def query(statement: str, params: tuple[str, ...]) -> tuple[object, ...] | None:
        if not db_file.exists():
            return None
        conn = sqlite3.connect(db_file, timeout=10)
        try:
            return conn.execute(statement, params).fetchone()
        except sqlite3.OperationalError:  # table not there yet
            return None
        finally:
            conn.close()

    def heartbeat_count() -> int | None:
        row = query("SELECT count FROM delivery_heartbeat WHERE name = ?", (HEARTBEAT_NAME,))
        return None if row is None else int(row[0])

    def beat_task() -> tuple[bool, object]:
        row = query(
            "SELECT last_run_at FROM django_celery_beat_periodictask WHERE name = ?", (BEAT_TASK_NAME,)
        )
        return (row is not None, None if row is None else row[0])

    return heartbeat_count, beat_task


def _postgres_reader(url: str) -> tuple[Callable[[], int | None], Callable[[], tuple[bool, object]]]:
    def query(statement: str, params: tuple[str, ...]) -> tuple[object, ...] | None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                return conn.execute(statement, params).fetchone()
        except psycopg.errors.UndefinedTable:
            return None

    def heartbeat_count() -> int | None:
        row = query("SELECT count FROM delivery_heartbeat WHERE name = %s", (HEARTBEAT_NAME,))
        return None if row is None else int(row[0])

    def beat_task() -> tuple[bool, object]:
        row = query(
            "SELECT last_run_at FROM django_celery_beat_periodictask WHERE name = %s", (BEAT_TASK_NAME,)
        )
        return (row is not None, None if row is None else row[0])

    return heartbeat_count, beat_task


def _with_path(url: str, path: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{path}"))


@pytest.fixture(params=["embedded", "production-like"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    run_id = secrets.token_hex(8)
    env = _base_env(tmp_path, run_id)

    if request.param == "embedded":
        env["DEBUG"] = "true"
        heartbeat_count, beat_task = _sqlite_reader(tmp_path / "var" / "notifyhub.sqlite3")
        yield Stack(env=env, debug=True, heartbeat_count=heartbeat_count, beat_task_last_run=beat_task)
        return

    admin_url = require_postgres()
    redis_url = require_redis()
    db_name = f"notifyhub_smoke_{run_id}"
    db_url = _with_path(admin_url, db_name)
    broker_url = _with_path(redis_url, str(SMOKE_REDIS_DB))
    broker = redis.Redis.from_url(broker_url)
    alphabet = string.ascii_letters + string.digits + "!#%()*+,-./:;<=>?@[]^_{|}~"
    env.update(
        DEBUG="false",
        SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(50)),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker_url,  # the result backend defaults to the same Redis
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    broker.flushdb()
    try:
        heartbeat_count, beat_task = _postgres_reader(db_url)
        yield Stack(env=env, debug=False, heartbeat_count=heartbeat_count, beat_task_last_run=beat_task)
    finally:
        broker.flushdb()
        broker.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} failed (rc={result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def _marked_processes(run_id: str) -> dict[int, str]:
    """Live (non-zombie) processes carrying this run's marker: pid → command line."""
    needle = f"{MARKER_VAR}={run_id}".encode()
    found: dict[int, str] = {}
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if needle not in (proc_dir / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found[int(proc_dir.name)] = cmdline.strip()
    return found


class Honcho:
    """``honcho start`` in its own session, its output captured to a file."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.run_id = env[MARKER_VAR]
        self.port = _free_port()
        self.log_path = tmp_path / "honcho.log"
        # An empty env file: honcho would otherwise load a developer's ``.env``, which
        # could point the "embedded" variant at another database or broker.
        empty_env_file = tmp_path / "empty.env"
        empty_env_file.write_text("")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(VENV_BIN / "honcho"),
                    "start",
                    "--procfile",
                    "Procfile",
                    "--env",
                    str(empty_env_file),
                    "--port",
                    str(self.port),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self, tail: int = 250) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no honcho output)"
        skipped = f"[… {len(lines) - tail} earlier lines]\n" if len(lines) > tail else ""
        return skipped + "\n".join(lines[-tail:])

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- honcho output ---\n{self.output()}", pytrace=False)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"honcho exited (rc={self.proc.returncode}) while waiting for {what}")
            if check():
                return
            time.sleep(0.25)
        self.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def get(self, path: str) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""
        except (urllib.error.URLError, OSError):
            return None, ""

    def cleanup(self) -> None:
        """Whatever happened: nothing of this run may outlive the test."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for pid in _marked_processes(self.run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


def test_make_run_stack_serves_runs_tasks_ticks_and_stops_cleanly(stack: Stack, tmp_path: Path) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find leftover processes")
    assert (VENV_BIN / "honcho").exists(), f"honcho is not installed in {VENV_BIN} (make install)"

    _manage(stack.env, "migrate", "--noinput", "-v0")
    # The rest of what `make run` does before starting the processes.
    _manage(stack.env, "seed_demo", "--count", "50")
    if stack.debug:
        _manage(stack.env, "ensure_dev_admin", "--password", secrets.token_urlsafe(12))
    if not stack.debug:
        # Manifest static storage with DEBUG off: the admin needs collected files
        # (STATIC_ROOT, a temporary folder for this run).
        _manage(stack.env, "collectstatic", "--noinput", "-v0")

    honcho = Honcho(stack.env, tmp_path)
    try:
        # 1. The web process serves the admin login page (and its stylesheet).
        honcho.wait_for(
            "GET /admin/login/ → 200", lambda: honcho.get("/admin/login/")[0] == 200, STARTUP_TIMEOUT
        )
        status, page = honcho.get("/admin/login/")
        assert status == 200
        assert honcho.get("/healthz") == (200, "ok")
        stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', page)
        assert stylesheets, "the admin login page links no stylesheet"
        assert honcho.get(stylesheets[0])[0] == 200, f"static file {stylesheets[0]} is not served"

        # 2. A task makes the round trip: client → broker → worker → result backend.
        nonce = secrets.token_hex(8)
        started = time.monotonic()
        ping = subprocess.run(
            [
                PYTHON,
                "manage.py",
                "shell",
                "-c",
                f"from delivery.tasks import ping; print(ping.delay({nonce!r}).get(timeout=30))",
            ],
            cwd=REPO_ROOT,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ping.returncode != 0 or not ping.stdout.strip().endswith(f"pong:{nonce}"):
            honcho.fail(
                f"ping round trip failed after {time.monotonic() - started:.1f} s "
                f"(rc={ping.returncode}):\nstdout: {ping.stdout}\nstderr: {ping.stderr}"
            )
        assert ping.stdout.strip().splitlines()[-1] == f"pong:{nonce}"

        # 3. Beat ticks: the heartbeat row exists and its count keeps growing.
        honcho.wait_for(
            f"the {HEARTBEAT_NAME!r} heartbeat row",
            lambda: stack.heartbeat_count() is not None,
            STARTUP_TIMEOUT,
        )
        first = stack.heartbeat_count()
        assert first is not None
        honcho.wait_for(
            f"the heartbeat count to grow from {first} to {first + 2} (NOTIFYHUB_HEARTBEAT_SECONDS=1)",
            lambda: (stack.heartbeat_count() or 0) >= first + 2,
            15,
        )
        exists, _ = stack.beat_task_last_run()
        assert exists, f"beat did not sync {BEAT_TASK_NAME!r} into django_celery_beat_periodictask"

        # 4. Ctrl-C: SIGINT to honcho's (foreground) process group stops all three.
        output_before_stop = honcho.output()
        if "stopped (rc=" in output_before_stop:
            honcho.fail("a process stopped before Ctrl-C")
        for name in ("web.1", "worker.1", "beat.1"):
            assert f"{name} started" in output_before_stop, f"{name} did not start:\n{output_before_stop}"
        os.killpg(honcho.proc.pid, signal.SIGINT)
        try:
            honcho.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            honcho.fail(f"honcho did not exit within {STOP_TIMEOUT:.0f} s of SIGINT")
        survivors = _marked_processes(honcho.run_id)
        deadline = time.monotonic() + 5
        while survivors and time.monotonic() < deadline:
            time.sleep(0.2)
            survivors = _marked_processes(honcho.run_id)
        if survivors:
            listing = "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(survivors.items()))
            honcho.fail(f"processes survived Ctrl-C:\n{listing}")
        assert honcho.proc.returncode == 130, honcho.output()  # honcho's exit code for SIGINT
        # Beat saves its schedule state when it shuts down gracefully.
        _, last_run_at = stack.beat_task_last_run()
        assert last_run_at is not None, f"beat did not record {BEAT_TASK_NAME!r} as run:\n{honcho.output()}"
    finally:
        honcho.cleanup()
