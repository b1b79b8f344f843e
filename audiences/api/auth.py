"""Who may call the API, how often, and with how big a body.

Order for every operation: body size (Content-Length, before anything is read) →
API key (``Authorization: Bearer nh_…``) → per-key rate → validation → the service.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.security import HttpBearer

from audiences.models import ApiKey
from audiences.services.api_keys import RateDecision, api_key_authenticate, api_key_check_rate


class RateLimited(Exception):
    """The key went over its per-minute rate (HTTP 429 with Retry-After)."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__("rate limited")
        self.decision = decision


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer <key>``: unknown or missing → 401, revoked → 403, too fast → 429."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        api_key = api_key_authenticate(plaintext=token.strip())
        if api_key is None:
            return None
        decision = api_key_check_rate(api_key=api_key)
        if not decision.allowed:
            raise RateLimited(decision)
        return api_key


def limit_body_size(run: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 413 from the Content-Length header alone, before the body is read.

    Applied in ninja's "view" mode, i.e. around the whole operation, so it runs before
    authentication and parsing. ``settings.DATA_UPLOAD_MAX_MEMORY_SIZE`` is raised to
    at least this limit (settings), so this check — not Django's bare 400 — answers.
    """

    @functools.wraps(run)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limit = settings.NOTIFYHUB_API_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"detail": "The Content-Length header is not a number.", "errors": []}, status=400
            )
        if length > limit:
            return JsonResponse(
                {
                    "detail": f"The request body is {length:,} bytes; the limit is {limit:,} bytes. "
                    "Send fewer events per request.",
                    "errors": [],
                },
                status=413,
            )
        return run(request, *args, **kwargs)

    return wrapper
