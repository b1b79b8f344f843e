"""Availability of the outside services some tests need.

Locally a missing service skips those tests with a clear reason; with ``CI=true``
it fails them instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
POSTGRES_URL = os.environ.get("NOTIFYHUB_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NOTIFYHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(available: bool, reason: str) -> None:
    """Skip (locally) or fail (CI) the calling test when a service is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} — required when CI=true", pytrace=False)
    pytest.skip(reason)


def _port_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), 1.0):
            return True
    except OSError:
        return False


def require_chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    require(bool(path), f"Chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver)")
    return str(path)


def require_postgres() -> str:
    require(_port_open(POSTGRES_URL, 5432), f"PostgreSQL not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


def require_redis() -> str:
    require(_port_open(REDIS_URL, 6379), f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL
