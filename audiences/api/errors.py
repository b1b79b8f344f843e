"""Every failure becomes JSON ``{"detail": …, "errors": [{"field", "message"}]}``, never a 500.

- 400: validation (types by pydantic, meaning by the services), naming the field —
  for batches the item too (``events[3].occurred_at``) — and what to send instead;
- 401: missing or unknown key; 403: revoked key; 404: unknown subscriber/device;
- 413: body too big (audiences.api.auth.limit_body_size); 429: over the key's rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from audiences.api.auth import RateLimited
from audiences.services.api_keys import ApiKeyRevoked
from audiences.services.devices import DeviceNotFound
from audiences.services.events import FieldValidationError
from audiences.services.privacy import SubscriberErased
from notifyhub.exceptions import ApplicationError

BODY_PARAM = "payload"  # every operation names its body parameter this way

# Hints appended to pydantic's messages for the error types clients hit most.
_HINTS = {
    "missing": "This field is required.",
    "datetime_from_date_parsing": "Send an ISO 8601 time with an offset, e.g. 2025-05-01T12:00:00Z.",
    "datetime_parsing": "Send an ISO 8601 time with an offset, e.g. 2025-05-01T12:00:00Z.",
    "datetime_type": "Send an ISO 8601 time with an offset, e.g. 2025-05-01T12:00:00Z.",
    "bool_type": "Send true or false (without quotes).",
    "json_invalid": "The body is not valid JSON.",
    "model_attributes_type": "Send a JSON object.",
    "dict_type": "Send a JSON object.",
    "list_type": "Send a JSON array.",
}


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "payload", "events", 3, "name")`` → ``events[3].name``."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    if parts and parts[0] == BODY_PARAM:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _body(detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"detail": detail, "errors": errors or []}


def install(api: NinjaAPI) -> None:
    def json(request: HttpRequest, status: int, data: dict[str, Any]) -> HttpResponse:
        return api.create_response(request, data, status=status)

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors = []
        for error in exc.errors:
            hint = _HINTS.get(str(error.get("type")))
            message = str(error.get("msg", "Invalid value."))
            if hint and hint not in message:
                message = f"{message}. {hint}" if error.get("type") != "missing" else hint
            errors.append({"field": field_path(error.get("loc", ())), "message": message})
        return json(
            request,
            400,
            _body("The request was not valid; nothing was saved. Fix the fields listed.", errors),
        )

    def on_field_errors(request: HttpRequest, exc: FieldValidationError) -> HttpResponse:
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
        return json(request, 400, _body(exc.message, errors))

    def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        response = json(
            request,
            401,
            _body("Send a valid API key as 'Authorization: Bearer <key>' (create one in the admin)."),
        )
        response["WWW-Authenticate"] = 'Bearer realm="notifyhub"'
        return response

    def on_revoked(request: HttpRequest, exc: ApiKeyRevoked) -> HttpResponse:
        return json(request, 403, _body(exc.message))

    def on_rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
        d = exc.decision
        response = json(
            request,
            429,
            _body(f"This key may make {d.limit} requests a minute; retry after {d.retry_after} s."),
        )
        response["Retry-After"] = str(d.retry_after)
        return response

    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        detail = str(exc)
        if exc.status_code == 400 and detail.startswith("Cannot parse request body"):
            detail = "The body is not valid JSON: send a JSON object with Content-Type: application/json."
        return json(request, exc.status_code, _body(detail))

    def on_not_found(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
        return json(request, 404, _body(exc.message))

    def on_gone(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
        return json(request, 410, _body(exc.message))

    def on_application_error(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
        return json(request, 400, _body(exc.message))

    # Handlers receive the raised instance; ninja's annotation also allows the class.
    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (ValidationError, on_validation),
        (FieldValidationError, on_field_errors),
        (HttpError, on_http_error),
        (AuthenticationError, on_unauthenticated),
        (ApiKeyRevoked, on_revoked),
        (RateLimited, on_rate_limited),
        (DeviceNotFound, on_not_found),
        (SubscriberNotFound, on_not_found),
        (SubscriberErased, on_gone),  # the person erased their data: not stored again
        (ApplicationError, on_application_error),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)


class SubscriberNotFound(ApplicationError):
    """No subscriber has the external id in a query parameter (HTTP 404)."""
