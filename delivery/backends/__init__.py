"""The one push-backend interface: what a message is, what a send returns, which backend.

Every sender — test sends now, the delivery engine's ``send_batch`` later — builds
``PushMessage`` values with ``build_push_message`` and hands them to
``get_backend().send(...)`` in batches of at most ``MAX_BATCH`` (FCM's ``send_each``
limit). A backend never raises for a single bad message: it returns one
``SendResult`` per message, in the same order, and the caller records each outcome
in the ledger. Backends:

- ``outbox`` (``delivery.backends.outbox``): the development default; stores every
  message fully rendered, as FCM's HTTP v1 API would receive it (the device inbox).
- ``fcm`` (``delivery.fcm``): firebase-admin's ``send_each`` (HTTP v1); ``FCM_ENDPOINT``
  can point it at the loopback stub (``manage.py fcm_stub``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from notifyhub.exceptions import ApplicationError

if TYPE_CHECKING:
    from audiences.models import Device
    from campaigns.models import Campaign, Variant
    from campaigns.rendering import RenderedMessage

# FCM's send_each takes at most 500 messages per call.
# https://firebase.google.com/docs/cloud-messaging/send-message#send-a-batch-of-messages
MAX_BATCH = 500

# https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages#fcmoptions
ANALYTICS_LABEL_RE = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,50}$")

# Keys NotifyHub adds to every message's ``data`` for the client SDK: the ledger row
# (so opens and clicks can be reported back), where a tap should lead, and the
# subscriber's signed preference-center page (so the app can open it from a message).
DATA_DELIVERY_ID = "nh_delivery_id"
DATA_CLICK_ACTION = "nh_click_action"
DATA_CLICK_URL = "nh_click_url"
DATA_PREFERENCES_URL = "nh_preferences_url"

# Web Push shows at most two action buttons in most browsers.
MAX_WEB_ACTIONS = 2

Priority = Literal["normal", "high"]

# Backend name → dotted path of its class.
BACKENDS: dict[str, str] = {
    "outbox": "delivery.backends.outbox.OutboxBackend",
    "fcm": "delivery.fcm.FcmBackend",
}


class PushBackendUnavailable(ApplicationError):
    """The configured push backend cannot send (not built yet, or misconfigured)."""


@dataclass(frozen=True, kw_only=True)
class PushMessage:
    """One message to one device token, fully rendered and provider-neutral.

    ``android``/``apns``/``webpush`` hold only the options that are set: ``android``
    may have ``channel_id`` and ``icon``; ``apns`` ``sound`` and ``badge``;
    ``webpush`` ``icon`` and ``actions`` (``[{"action": …, "title": …}]``).
    TTL, priority and collapse key apply to every platform; each backend maps them
    to the provider's fields.
    """

    delivery_id: int | None
    token: str
    platform: str  # audiences.Device.Platform: "android", "ios" or "web"
    title: str
    body: str
    image_url: str = ""
    click_url: str = ""
    data: dict[str, str] = field(default_factory=dict)
    android: dict[str, Any] = field(default_factory=dict)
    apns: dict[str, Any] = field(default_factory=dict)
    webpush: dict[str, Any] = field(default_factory=dict)
    ttl_seconds: int = 24 * 3600
    priority: Priority = "normal"
    collapse_key: str = ""
    analytics_label: str = ""
    is_test: bool = False
    # Not sent to the provider: lets the outbox store the message against its device.
    device_id: int | None = None


@dataclass(frozen=True)
class SendResult:
    """What became of one message.

    ``error_code`` uses FCM's names (``UNREGISTERED``, ``INVALID_ARGUMENT``,
    ``QUOTA_EXCEEDED``, ``UNAVAILABLE``, ``INTERNAL``, ``SENDER_ID_MISMATCH``…) plus
    ``TRANSPORT`` (no HTTP answer), ``AUTH`` (credentials refused) and ``CONFIG``
    (backend misconfigured). A failed result is exactly one of:

    - ``token_invalid``: the device's token is dead — deactivate the device, don't retry;
    - ``retryable``: transient — send again later, never before ``retry_after``
      seconds when it is set (always set for ``QUOTA_EXCEEDED``);
    - ``fatal``: every message of the run would fail the same way (payload
      INVALID_ARGUMENT, AUTH, CONFIG) — pause the run, deactivate nothing;
    - none of them: this message failed for good.

    ``outcome`` names the class. https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
    """

    ok: bool
    message_id: str = ""
    error_code: str = ""
    error: str = ""
    retry_after: float | None = None
    token_invalid: bool = False
    retryable: bool = False
    fatal: bool = False

    @property
    def outcome(self) -> Literal["sent", "token_invalid", "retry", "fatal", "failed"]:
        if self.ok:
            return "sent"
        if self.token_invalid:
            return "token_invalid"
        if self.fatal:
            return "fatal"
        return "retry" if self.retryable else "failed"


class PushBackend(Protocol):
    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Send up to ``MAX_BATCH`` messages; one result per message, in the same order."""
        ...


def get_backend() -> PushBackend:
    """The backend named by ``settings.NOTIFYHUB_PUSH_BACKEND``, one instance per process.

    Read at call time (not import time) so that ``override_settings`` and a worker's
    environment both apply. Raises PushBackendUnavailable for a backend that cannot send.
    """
    return _backend(settings.NOTIFYHUB_PUSH_BACKEND)


@cache
def _backend(name: str) -> PushBackend:
    if name not in BACKENDS:
        raise PushBackendUnavailable(
            f"NOTIFYHUB_PUSH_BACKEND={name!r} is not a push backend; "
            f"use one of: {', '.join(sorted(BACKENDS))}."
        )
    backend: PushBackend = import_string(BACKENDS[name])()
    return backend


def analytics_label_for(*, campaign_id: int, is_test: bool = False) -> str:
    """The FCM analytics label of a campaign's messages (test sends kept apart)."""
    label = f"campaign-{campaign_id}-test" if is_test else f"campaign-{campaign_id}"
    if not ANALYTICS_LABEL_RE.match(label):  # pragma: no cover - ids are digits
        raise ValueError(f"invalid FCM analytics label {label!r}")
    return label


def collapse_key_for(*, run_id: int) -> str:
    """One collapse key per run: a retried send of the same run replaces, not repeats."""
    return f"nh-{run_id}"


def build_push_message(
    *,
    delivery_id: int | None,
    device: Device,
    campaign: Campaign,
    variant: Variant,
    rendered: RenderedMessage,
    is_test: bool,
    run_id: int,
) -> PushMessage:
    """Map a rendered variant and the campaign's delivery options onto one PushMessage."""
    data = {str(key): str(value) for key, value in (rendered.data or {}).items()}
    if delivery_id is not None:
        data[DATA_DELIVERY_ID] = str(delivery_id)
    click_url = rendered.click_url
    if click_url and not is_test:
        # Imported here: receipts reads the ledger models, backends stay import-light.
        from delivery.receipts import click_tracking_url

        # http(s) links go through the signed /r/<token>/ redirect, which records the click.
        click_url = click_tracking_url(delivery_id=delivery_id, target=click_url)
    if click_url:
        data[DATA_CLICK_ACTION] = str(variant.click_action)
        data[DATA_CLICK_URL] = click_url
    if device.subscriber_id is not None:
        # Imported here, like receipts: backends stay import-light.
        from audiences.preference_links import preference_url

        data[DATA_PREFERENCES_URL] = preference_url(subscriber_id=device.subscriber_id)
    android = {
        key: value
        for key, value in {"channel_id": variant.android_channel_id, "icon": variant.android_icon}.items()
        if value
    }
    apns: dict[str, Any] = {}
    if variant.ios_sound:
        apns["sound"] = variant.ios_sound
    if variant.ios_badge is not None:
        apns["badge"] = variant.ios_badge
    webpush: dict[str, Any] = {}
    if variant.web_icon:
        webpush["icon"] = variant.web_icon
    actions = [
        {"action": str(item["action"]), "title": str(item["title"])}
        for item in (variant.web_actions or [])
        if isinstance(item, dict) and item.get("action") and item.get("title")
    ][:MAX_WEB_ACTIONS]
    if actions:
        webpush["actions"] = actions
    priority: Priority = "high" if campaign.priority == "high" else "normal"
    return PushMessage(
        delivery_id=delivery_id,
        device_id=device.pk,
        token=device.token,
        platform=device.platform,
        title=rendered.title,
        body=rendered.body,
        image_url=variant.image_url,
        click_url=click_url,
        data=data,
        android=android,
        apns=apns,
        webpush=webpush,
        ttl_seconds=campaign.ttl_seconds,
        priority=priority,
        collapse_key=collapse_key_for(run_id=run_id),
        analytics_label=analytics_label_for(campaign_id=campaign.pk, is_test=is_test),
        is_test=is_test,
    )
