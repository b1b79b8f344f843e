"""System checks of the project."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

_MESSAGE = (
    "SECRET_KEY is not set, so this command runs with a throwaway key: anything it "
    "signs (preference-center links, sessions) will not verify later."
)
_HINT = 'Set SECRET_KEY, e.g. to: python -c "import secrets; print(secrets.token_urlsafe(50))"'


def _ephemeral() -> bool:
    return bool(getattr(settings, "SECRET_KEY_IS_EPHEMERAL", False))


@register(Tags.security)
def secret_key_is_set(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when a management command runs with a throwaway SECRET_KEY (see manage.py)."""
    return [Warning(_MESSAGE, hint=_HINT, id="notifyhub.W001")] if _ephemeral() else []


@register(Tags.security, deploy=True)
def secret_key_is_set_for_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy`` fails outright without a real SECRET_KEY."""
    return [Error(_MESSAGE, hint=_HINT, id="notifyhub.E001")] if _ephemeral() else []
