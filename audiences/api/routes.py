"""The client API's operations: thin — parse, call one service, shape the answer.

The receipt operations (``deliveries/{id}/opened|clicked``) stamp the delivery ledger,
so they live in ``delivery.api`` and are mounted on the same API by ``notifyhub/urls.py``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from ninja.responses import Status
from pydantic import Field

from audiences import preference_links
from audiences.api.errors import SubscriberNotFound
from audiences.api.schemas import (
    DeviceIn,
    DeviceOut,
    DeviceRemoveIn,
    DeviceRemoveOut,
    ErrorOut,
    EventBatchIn,
    EventBatchOut,
    IdentifyIn,
    PreferenceUrlOut,
    SubscriberOut,
)
from audiences.models import ApiKey, Subscriber
from audiences.services.devices import device_register, device_remove
from audiences.services.events import (
    EventInput,
    FieldError,
    FieldValidationError,
    event_track_batch,
)
from audiences.services.preferences import ConsentContext
from audiences.services.subscribers import subscriber_identify

router = Router()

ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    413: ErrorOut,
    429: ErrorOut,
}


def _consent_context(request: HttpRequest) -> ConsentContext:
    api_key: ApiKey = request.auth  # type: ignore[attr-defined]
    return ConsentContext(
        source="api",
        source_detail=f"API key {api_key.prefix}… ({api_key.name})",
        ip_address=request.META.get("REMOTE_ADDR", ""),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )


def _subscriber_for(external_id: str) -> Subscriber:
    subscriber = Subscriber.objects.filter(external_id=external_id).first()
    if subscriber is None:
        raise FieldValidationError(
            [
                FieldError(
                    "external_id",
                    f"No subscriber has the external id {external_id!r}; identify it first "
                    "(POST /api/v1/identify).",
                )
            ],
            "The request refers to an unknown subscriber; nothing was saved.",
        )
    return subscriber


@router.post(
    "/identify",
    response={200: SubscriberOut, 201: SubscriberOut, **ERRORS},
    summary="Identify a subscriber: create it or update the fields sent",
    tags=["subscribers"],
)
def identify(request: HttpRequest, payload: IdentifyIn) -> Status[dict[str, Any]]:
    changes = payload.model_dump(include=payload.model_fields_set - {"external_id"})
    result = subscriber_identify(
        external_id=payload.external_id, changes=changes, context=_consent_context(request)
    )
    s = result.subscriber
    body = {
        "external_id": s.external_id,
        "created": result.created,
        "changed": result.changed,
        **{
            name: getattr(s, name)
            for name in SubscriberOut.model_fields
            if name not in {"external_id", "created", "changed"}
        },
    }
    return Status(201 if result.created else 200, body)


@router.post(
    "/devices",
    response={200: DeviceOut, 201: DeviceOut, **ERRORS},
    summary="Register a device token (moves it from another subscriber, re-activates it)",
    tags=["devices"],
)
def register_device(request: HttpRequest, payload: DeviceIn) -> Status[dict[str, Any]]:
    subscriber = _subscriber_for(payload.external_id)
    result = device_register(
        subscriber=subscriber,
        token=payload.token,
        platform=payload.platform,
        locale=payload.locale,
        app_version=payload.app_version,
    )
    d = result.device
    body = {
        "external_id": subscriber.external_id,
        "platform": d.platform,
        "locale": d.locale,
        "app_version": d.app_version,
        "is_active": d.is_active,
        "created": result.created,
        "moved": result.moved_from_subscriber_id is not None,
        "reactivated": result.reactivated,
    }
    return Status(201 if result.created else 200, body)


@router.post(
    "/devices/remove",
    response={200: DeviceRemoveOut, 404: ErrorOut, **ERRORS},
    summary="Remove a device (logout, uninstall): it stops receiving pushes",
    tags=["devices"],
)
def remove_device(request: HttpRequest, payload: DeviceRemoveIn) -> dict[str, Any]:
    return {"removed": device_remove(token=payload.token)}


@router.post(
    "/events",
    response={200: EventBatchOut, **ERRORS},
    summary="Track a batch of events (at most 1,000; idempotent per event)",
    tags=["events"],
)
def track_events(request: HttpRequest, payload: EventBatchIn) -> dict[str, Any]:
    now = timezone.now()
    result = event_track_batch(
        events=[
            EventInput(
                external_id=e.external_id,
                name=e.name,
                occurred_at=e.occurred_at or now,
                idempotency_key=e.idempotency_key,
                properties=e.properties,
            )
            for e in payload.events
        ],
        now=now,
    )
    return {"received": result.received, "recorded": result.recorded, "duplicates": result.duplicates}


class PreferenceUrlQuery(Schema):
    external_id: str = Field(min_length=1, max_length=255)


@router.get(
    "/preference-url",
    response={200: PreferenceUrlOut, 404: ErrorOut, **ERRORS},
    summary="Get a subscriber's signed preference-center URL",
    tags=["subscribers"],
)
def preference_url(request: HttpRequest, query: Query[PreferenceUrlQuery]) -> dict[str, Any]:
    subscriber = Subscriber.objects.filter(external_id=query.external_id).first()
    if subscriber is None:
        raise SubscriberNotFound(f"No subscriber has the external id {query.external_id!r}.")
    token = preference_links.make_token(subscriber=subscriber)
    return {
        "url": request.build_absolute_uri(preference_links.preference_path(token=token)),
        "expires_at": preference_links.expires_at(),
    }
