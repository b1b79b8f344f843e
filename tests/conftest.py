"""Shared fixtures."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "correct-horse-battery")


@pytest.fixture
def admin_client_logged_in(client, superuser):  # type: ignore[no-untyped-def]
    client.force_login(superuser)
    return client
