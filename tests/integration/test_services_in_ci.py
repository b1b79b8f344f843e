"""CI must run the suite on the production services, not on the embedded defaults.

``.ci/run`` exports ``DATABASE_URL`` (PostgreSQL) and ``CELERY_BROKER_URL`` (Redis);
if either got lost on the way, the suite would still pass on SQLite and the
filesystem broker, and CI would prove less than it claims. Locally these checks are
skipped: the embedded defaults are fine there.
"""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.services import IN_CI

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not IN_CI, reason="CI is not set: only CI must run on PostgreSQL and Redis"),
]


@pytest.mark.django_db
def test_suite_runs_on_postgresql() -> None:
    assert connection.vendor == "postgresql", (
        f"CI runs the suite on {connection.vendor!r}, not PostgreSQL: is DATABASE_URL exported?"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    assert version.startswith("PostgreSQL")


def test_celery_broker_is_redis_and_answers() -> None:
    broker_url = settings.CELERY_BROKER_URL
    assert broker_url.startswith("redis://"), (
        f"CI's Celery broker is {broker_url!r}, not Redis: is CELERY_BROKER_URL exported?"
    )
    client = redis.Redis.from_url(broker_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()
