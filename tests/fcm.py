"""The loopback FCM stub for tests: fixtures (in a thread) and a helper (as its own process).

Use the fixtures by importing them into a test module (or list ``"tests.fcm"`` in
``pytest_plugins`` of the root conftest). The functions carry a ``_fixture`` suffix so
that a test's ``fcm_settings`` argument does not shadow an import::

    from tests.fcm import fcm_settings_fixture, fcm_stub_fixture, fcm_stub_server_fixture  # noqa: F401

- ``fcm_stub``: the session's stub, reset (empty log, no faults) for this test.
- ``fcm_settings``: ``fcm_stub`` plus Django settings pointing the ``fcm`` backend at it
  (``NOTIFYHUB_PUSH_BACKEND=fcm``, ``FIREBASE_CREDENTIALS``, ``FCM_ENDPOINT``).
- ``fcm_stub_process(directory)``: the stub in a separate process — for integration
  tests with real workers (pass ``handle.environ()`` to them) and for benchmarks, where
  a stub thread would compete with the code under test for the GIL.

A handle has ``.url``, ``.credentials_path``, ``.project_id``, ``.log()`` (accepted
messages), ``.messages()`` (their ``message`` bodies), ``.requests()`` (every send
request with arrival time and outcome), ``.stats()``, ``.set_faults(...)``, ``.faults()``
and ``.reset()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from delivery.backends import _backend
from delivery.fcm_stub import DEFAULT_PROJECT, FcmStubClient, FcmStubServer, write_service_account

BASE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class FcmStubHandle:
    url: str
    credentials_path: Path
    project_id: str = DEFAULT_PROJECT
    client: FcmStubClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = FcmStubClient(self.url)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def log(self) -> list[dict[str, Any]]:
        """Every accepted message: ``{"seq", "t", "name", "project", "message"}``."""
        return self.client.log()

    def messages(self) -> list[dict[str, Any]]:
        """The ``message`` body of every accepted message, in arrival order."""
        return [entry["message"] for entry in self.client.log()]

    def requests(self) -> list[dict[str, Any]]:
        """Every send request: ``{"t", "token", "status", "error"}`` (status 0: dropped)."""
        return self.client.requests()

    def stats(self) -> dict[str, Any]:
        return self.client.stats()

    def set_faults(self, plan: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
        """Change the fault plan (``delivery.fcm_stub.FaultPlan``): ``tokens={"t": "UNREGISTERED"}``…"""
        return self.client.set_faults(plan, **keys)

    def faults(self) -> dict[str, Any]:
        return self.client.faults()

    def reset(self, *, log: bool = True, faults: bool = True) -> None:
        self.client.reset(log=log, faults=faults)

    def settings(self) -> dict[str, str]:
        """The Django settings that send through this stub."""
        return {
            "NOTIFYHUB_PUSH_BACKEND": "fcm",
            "FIREBASE_CREDENTIALS": str(self.credentials_path),
            "FCM_ENDPOINT": self.url,
        }

    def environ(self) -> dict[str, str]:
        """Environment variables for worker processes (same names as the settings)."""
        return self.settings()


@pytest.fixture(scope="session", name="fcm_stub_server")
def fcm_stub_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FcmStubHandle]:
    """One stub per test session (per xdist worker), served from a daemon thread."""
    server = FcmStubServer().start()
    path = write_service_account(
        tmp_path_factory.mktemp("fcm") / "service-account.json", token_uri=server.token_uri
    )
    try:
        yield FcmStubHandle(url=server.url, credentials_path=path)
    finally:
        server.stop()


@pytest.fixture(name="fcm_stub")
def fcm_stub_fixture(fcm_stub_server: FcmStubHandle) -> FcmStubHandle:
    """The session's stub with an empty log and no faults."""
    fcm_stub_server.reset()
    return fcm_stub_server


@pytest.fixture(name="fcm_settings")
def fcm_settings_fixture(fcm_stub: FcmStubHandle, settings: Any) -> Iterator[FcmStubHandle]:
    """``fcm_stub``, with the ``fcm`` backend configured to send through it."""
    for name, value in fcm_stub.settings().items():
        setattr(settings, name, value)
    _backend.cache_clear()
    yield fcm_stub
    _backend.cache_clear()


@contextmanager
def fcm_stub_process(directory: Path, *args: str) -> Iterator[FcmStubHandle]:
    """Run ``python -m delivery.fcm_stub`` (extra CLI ``args``) until the block ends.

    Writes the service account to ``directory/service-account.json``. The process is
    terminated (SIGTERM, then SIGKILL) on exit.
    """
    credentials_path = directory / "service-account.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery.fcm_stub",
            "--port",
            "0",
            "--write-credentials",
            str(credentials_path),
            *args,
        ],
        cwd=BASE_DIR,
        env={**os.environ, "PYTHONPATH": str(BASE_DIR)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        values: dict[str, str] = {}
        while "FIREBASE_CREDENTIALS" not in values:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the FCM stub exited with {process.wait()} before it was ready")
            name, sep, value = line.strip().partition("=")
            if sep:
                values[name] = value
        yield FcmStubHandle(url=values["FCM_ENDPOINT"], credentials_path=Path(values["FIREBASE_CREDENTIALS"]))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
