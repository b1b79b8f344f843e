"""Device tokens reported by client apps: register (or move, or re-activate) and remove."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from audiences.models import Device, Subscriber
from audiences.services.events import FieldError, FieldValidationError
from notifyhub.exceptions import ApplicationError

LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}$")
MAX_TOKEN_LENGTH = 4096


class DeviceValidationError(FieldValidationError):
    """The registration was refused; ``errors`` names each field and what to do."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, "The device was not registered: fix the fields listed and try again.")


class DeviceNotFound(ApplicationError):
    """No device has this token."""


@dataclass(frozen=True)
class RegisterResult:
    device: Device
    created: bool
    moved_from_subscriber_id: int | None
    reactivated: bool


def _normalize_locale(locale: str) -> str:
    """``pt_br`` → ``pt-BR`` (BCP 47 casing for the common language-REGION form)."""
    parts = locale.strip().replace("_", "-").split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        out.append(part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part)
    return "-".join(out)


def _validate(*, token: str, platform: str, locale: str, app_version: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not token or len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
        errors.append(
            FieldError(
                "token",
                "Send the FCM registration token from getToken(): "
                f"1 to {MAX_TOKEN_LENGTH} characters, no spaces.",
            )
        )
    if platform not in Device.Platform.values:
        errors.append(FieldError("platform", "Use one of: " + ", ".join(Device.Platform.values) + "."))
    if locale and (len(locale) > 35 or not LOCALE_RE.match(locale)):
        errors.append(FieldError("locale", "Use a locale tag like en, pt-BR or zh-Hant-TW."))
    if len(app_version) > 40:
        errors.append(FieldError("app_version", "Keep the app version to 40 characters, e.g. 3.2.1 (451)."))
    return errors


@transaction.atomic
def device_register(
    *,
    subscriber: Subscriber,
    token: str,
    platform: str,
    locale: str = "",
    app_version: str = "",
    now: dt.datetime | None = None,
) -> RegisterResult:
    """Register ``token`` for ``subscriber``.

    A token already stored for another subscriber moves to this one (the app now
    belongs to someone else: a shared phone, a new login); an invalidated token is
    re-activated (the app got it again from FCM, so it works). Platform, locale and
    app version are updated from the report.

    Transaction: one atomic block; the device row is locked (``SELECT … FOR UPDATE``)
    and a concurrent first registration of the same token falls back to the winner's
    row. Idempotent: registering the same values again only moves ``last_seen_at``.
    """
    errors = _validate(token=token, platform=platform, locale=locale, app_version=app_version)
    if errors:
        raise DeviceValidationError(errors)
    now = now or timezone.now()
    locale = _normalize_locale(locale) if locale else ""
    values = {
        "subscriber": subscriber,
        "platform": platform,
        "locale": locale,
        "app_version": app_version,
        "last_seen_at": now,
    }
    device = Device.objects.select_for_update().filter(token=token).first()
    if device is None:
        try:
            with transaction.atomic():
                device = Device.objects.create(token=token, **values)
            return RegisterResult(
                device=device, created=True, moved_from_subscriber_id=None, reactivated=False
            )
        except IntegrityError:
            device = Device.objects.select_for_update().get(token=token)

    moved_from = device.subscriber_id if device.subscriber_id != subscriber.pk else None
    reactivated = not device.is_active
    for name, value in values.items():
        setattr(device, name, value)
    device.is_active = True
    device.invalidated_at = None
    device.invalidation_reason = ""
    device.save(
        update_fields=[*values, "is_active", "invalidated_at", "invalidation_reason"],
    )
    return RegisterResult(
        device=device, created=False, moved_from_subscriber_id=moved_from, reactivated=reactivated
    )


def device_remove(*, token: str, now: dt.datetime | None = None) -> bool:
    """Mark the device inactive with reason "removed" (the app logged out or uninstalled).

    One conditional UPDATE (``WHERE is_active``). Idempotent: removing an already
    inactive device changes nothing and returns False. Raises DeviceNotFound for an
    unknown token.
    """
    now = now or timezone.now()
    changed = Device.objects.filter(token=token, is_active=True).update(
        is_active=False, invalidated_at=now, invalidation_reason=Device.InvalidationReason.REMOVED
    )
    if not changed and not Device.objects.filter(token=token).exists():
        raise DeviceNotFound("No device has this token; nothing to remove.")
    return bool(changed)


def devices_deactivate_dead(*, reasons: Mapping[int, str], now: dt.datetime | None = None) -> int:
    """Deactivate devices whose token the push provider reported dead; return how many changed.

    ``reasons`` maps device id → invalidation reason (e.g. ``unregistered``). One
    UPDATE, set-based, in the caller's transaction (the delivery engine records the
    send outcomes in the same commit). Idempotent: only active devices change, so a
    device re-registered meanwhile by its app is not touched twice, and the
    invalidation fields satisfy ``device_invalidation_consistent``. Later plans
    never target an inactive device.
    """
    if not reasons:
        return 0
    now = now or timezone.now()
    by_reason: dict[str, list[int]] = {}
    for device_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(device_id)
    reason_field = Device._meta.get_field("invalidation_reason")
    return Device.objects.filter(pk__in=list(reasons), is_active=True).update(
        is_active=False,
        invalidated_at=now,
        invalidation_reason=Case(
            *(When(pk__in=ids, then=Value(reason)) for reason, ids in by_reason.items()),
            output_field=reason_field,
        ),
    )
