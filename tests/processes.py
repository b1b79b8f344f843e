"""Real ``celery worker`` / ``celery beat`` processes (and a private Redis) for tests and benchmarks.

Integration tests and benchmarks run the engine the way production does: separate
worker and beat processes against the test database (PostgreSQL, committed rows — a
transactional test) and a Redis broker. This module starts them, watches them, kills
them on purpose (``kill -9`` a worker) and always cleans up::

    from tests.processes import Processes, celery_environ, test_database_url, wait_until

    env = celery_environ(tmp_path, broker_url=url, database_url=test_database_url(), NOTIFYHUB_X="1")
    with Processes(tmp_path, env) as procs:
        worker = procs.start_worker(concurrency=2)
        procs.start_beat()
        procs.wait_for("the heartbeat", lambda: Heartbeat.objects.exists(), 45)
        procs.kill(worker)                      # SIGKILL to its whole process group
        ...

``RedisServer`` is a throwaway ``redis-server`` on a free port (no persistence) with
``restart()`` — for tests that break the broker without disturbing anyone else.

Intervals of the settings' beat schedule (``NOTIFYHUB_DISPATCH_SECONDS``,
``NOTIFYHUB_HEARTBEAT_SECONDS``) must be whole seconds: django-celery-beat stores them
as integers, and 0.5 becomes 0 — a task sent on every beat tick.

Every process runs in its own session (process group), so ``stop()``/``kill()`` reach
prefork children too; output goes to one log file per process (``output()`` shows the
tails, which the failure messages of ``wait_for`` include).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(Path(sys.executable).parent / "python")
ALL_QUEUES = ("default", "plan", "send", "events")
STARTUP_TIMEOUT = 45.0

# Settings that must come from the test only, never from the suite's own environment.
_DROPPED_PREFIXES = ("CELERY_", "NOTIFYHUB_", "DJANGO_")
_DROPPED = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "CACHE_URL",
    "ALLOWED_HOSTS",
    "FIREBASE_CREDENTIALS",
    "FCM_ENDPOINT",
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, *, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (→ True) or ``timeout`` seconds passed (→ False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_url_path(url: str, path: str | int) -> str:
    """``url`` with its path replaced: a Redis database number, a PostgreSQL database name."""
    return urlunparse(urlparse(url)._replace(path=f"/{path}"))


def test_database_url() -> str:
    """The URL of the database the test runs on (the test database, not ``DATABASE_URL``'s).

    Worker and beat processes must see the test's committed rows: pass this as their
    ``DATABASE_URL``. Only meaningful on PostgreSQL.
    """
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


def celery_environ(directory: Path, *, broker_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment for worker/beat processes: this process's, minus every app setting, plus these.

    ``CACHE_URL`` defaults to a file cache in ``directory`` (pass ``CACHE_URL=redis://…``
    to share Redis); the heartbeat ticks every second.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="notifyhub.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        NOTIFYHUB_VAR_DIR=str(directory / "var"),
        NOTIFYHUB_HEARTBEAT_SECONDS="1",
        CACHE_URL=f"filecache://{directory / 'cache'}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# ---------------------------------------------------------------------------
# Celery processes
# ---------------------------------------------------------------------------


def _spawn(command: list[str], env: Mapping[str, str], log: Path, mode: str) -> subprocess.Popen[bytes]:
    with log.open(mode) as out:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class Managed:
    """One process (its own process group) and its log file."""

    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    respawns: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group (prefork children included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the main process (warm shutdown: it stops its own pool), SIGKILL to the group
        after ``timeout``; reaps the process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
        # Children that outlived their parent (a killed prefork parent's pool).
        self.signal(signal.SIGKILL)

    def kill(self) -> None:
        """``kill -9`` the process group: no warm shutdown, nothing acked, nothing saved."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


@dataclass
class Processes:
    """Worker and beat processes sharing one environment; ``stop_all()`` (or ``with``) ends them all."""

    directory: Path
    env: dict[str, str]
    processes: dict[str, Managed] = field(default_factory=dict)
    expected_dead: set[str] = field(default_factory=set)
    supervised: set[str] = field(default_factory=set)

    # -- starting ---------------------------------------------------------------

    def start(self, name: str, command: list[str], env: Mapping[str, str] | None = None) -> Managed:
        if name in self.processes:
            raise ValueError(f"a process named {name!r} was already started")
        log = self.directory / f"{name}.log"
        full_env = {**self.env, **(env or {})}
        managed = Managed(name=name, command=command, log=log, popen=_spawn(command, full_env, log, "wb"))
        managed.env = full_env
        self.processes[name] = managed
        return managed

    def supervise(self, which: str | Managed) -> None:
        """Start this process again whenever it exits, as systemd's ``Restart=always`` would.

        Checked while waiting (``wait_for``/``check_alive``); the new process appends to
        the same log and ``Managed.respawns`` counts the restarts.
        """
        self.supervised.add(self._get(which).name)

    def respawn(self, which: str | Managed) -> Managed:
        """Replace a (dead) process by a new one with the same command and environment."""
        managed = self._get(which)
        managed.stop(timeout=5)  # reap it, and kill what is left of its group
        managed.popen = _spawn(managed.command, managed.env, managed.log, "ab")
        managed.respawns += 1
        self.expected_dead.discard(managed.name)
        return managed

    def start_worker(
        self,
        name: str | None = None,
        *,
        queues: Iterable[str] = ALL_QUEUES,
        concurrency: int = 2,
        pool: str = "prefork",
        env: Mapping[str, str] | None = None,
        extra_args: Iterable[str] = (),
    ) -> Managed:
        """``celery worker`` consuming ``queues`` with ``concurrency`` processes/threads of ``pool``."""
        name = name or f"worker{sum(1 for n in self.processes if n.startswith('worker')) + 1}"
        command = [
            PYTHON, "-m", "celery", "-A", "notifyhub", "worker",
            "--queues", ",".join(queues), "--pool", pool, "--concurrency", str(concurrency),
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"{name}-{secrets.token_hex(4)}@%h", *extra_args,
        ]  # fmt: skip
        return self.start(name, command, env)

    def start_workers(self, count: int, **kwargs: Any) -> list[Managed]:
        """``count`` workers, each like ``start_worker(**kwargs)`` (names worker1, worker2…)."""
        return [self.start_worker(**kwargs) for _ in range(count)]

    def start_beats(self, count: int, **kwargs: Any) -> list[Managed]:
        """``count`` beat processes (two beats must still start each run once)."""
        return [self.start_beat(**kwargs) for _ in range(count)]

    def start_beat(
        self, name: str | None = None, *, env: Mapping[str, str] | None = None, max_interval: float = 1
    ) -> Managed:
        """``celery beat`` with django-celery-beat's DatabaseScheduler (campaigns' tasks + settings')."""
        name = name or f"beat{sum(1 for n in self.processes if n.startswith('beat')) + 1}"
        command = [
            PYTHON, "-m", "celery", "-A", "notifyhub", "beat",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval", str(max_interval), "--loglevel", "INFO", "--pidfile=",
            "--schedule", str(self.directory / f"{name}-schedule"),
        ]  # fmt: skip
        return self.start(name, command, env)

    # -- stopping ---------------------------------------------------------------

    def _get(self, which: str | Managed) -> Managed:
        return which if isinstance(which, Managed) else self.processes[which]

    def kill(self, which: str | Managed) -> None:
        """``kill -9`` one process (group); ``wait_for`` no longer treats its death as a failure."""
        managed = self._get(which)
        self.expected_dead.add(managed.name)
        managed.kill()

    def stop(self, which: str | Managed, timeout: float = 10.0) -> None:
        managed = self._get(which)
        self.expected_dead.add(managed.name)
        managed.stop(timeout)

    def stop_all(self, *, graceful: bool = True) -> None:
        """Whatever happened, nothing outlives the test: SIGTERM to all, then SIGKILL stragglers.

        ``graceful=False``: SIGKILL every process group at once (fast; for tests whose
        state lives in the database anyway).
        """
        if not graceful:
            for managed in self.processes.values():
                if managed.alive():
                    managed.signal(signal.SIGKILL)
        for managed in self.processes.values():
            if managed.alive():
                with contextlib.suppress(ProcessLookupError):
                    managed.popen.send_signal(signal.SIGTERM)
        for managed in self.processes.values():
            managed.stop(timeout=10)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    # -- watching ---------------------------------------------------------------

    def output(self, tail: int = 60) -> str:
        return "\n".join(
            f"--- {name} (last {tail} lines) ---\n{managed.tail(tail)}"
            for name, managed in self.processes.items()
        )

    def check_alive(self, what: str = "") -> None:
        """Fail the test if a process died unexpectedly (supervised ones are started again)."""
        for name, managed in self.processes.items():
            if name in self.expected_dead or managed.alive():
                continue
            if name in self.supervised:
                self.respawn(managed)
            else:
                pytest.fail(
                    f"{name} exited (rc={managed.popen.returncode})"
                    f"{' while waiting for ' + what if what else ''}\n{self.output()}",
                    pytrace=False,
                )

    def wait_for(
        self, what: str, check: Callable[[], bool], timeout: float, *, interval: float = 0.2
    ) -> None:
        """Wait until ``check()``; fail the test (with the logs) on timeout or if a process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(what)
            if check():
                return
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.output()}", pytrace=False)

    def count_in_logs(self, needle: str, *names: str) -> int:
        """Lines containing ``needle`` in the named processes' logs (all when none named)."""
        chosen = [self.processes[n] for n in names] if names else list(self.processes.values())
        return sum(line.count(needle) for managed in chosen for line in managed.text().splitlines())


# ---------------------------------------------------------------------------
# A private Redis
# ---------------------------------------------------------------------------


@dataclass
class RedisServer:
    """``redis-server --port N --save "" --appendonly no`` on a free port; nothing persists."""

    directory: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.popen is not None and self.popen.poll() is None:
            return self
        log = self.directory / f"redis-{self.port}.log"
        with log.open("ab") as out:
            command = [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ]  # fmt: skip
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_until(self.ping, timeout):
            self.stop()
            raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout} s")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop it (SIGKILL with ``kill=True``: no goodbye to the clients)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.popen = None

    def restart(self, *, down_for: float = 0.0, kill: bool = True) -> None:
        """Stop (SIGKILL by default), stay down ``down_for`` s, start again — empty, same port."""
        self.stop(kill=kill)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
