"""Request-shape validation of ``messages:send`` bodies, the way FCM's HTTP v1 API does it.

FCM parses the body into its protobuf ``Message`` and answers 400 INVALID_ARGUMENT naming
the offending field (``Invalid value at 'message.android.ttl' …`` / ``Unknown name "x" at
'message' …``) with a ``google.rpc.BadRequest`` detail; then it applies its own checks
(exactly one target, reserved data keys, platform headers, the 4 KB payload limit).
The stub stops at the first violation, as FCM reports one per response in practice.
Reference: https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Enum values are accepted case-insensitively: the Admin SDK sends "high"/"normal".
ANDROID_PRIORITIES = {"NORMAL", "HIGH"}
DURATION_RE = re.compile(r"^\d{1,12}(\.\d{1,9})?s$")
ANALYTICS_LABEL_RE = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,50}$")
TOPIC_RE = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,900}$")
WEBPUSH_TOPIC_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
WEBPUSH_URGENCY = {"very-low", "low", "normal", "high"}
APNS_PRIORITIES = {"1", "5", "10"}
RESERVED_DATA_KEYS = {"from", "notification", "message_type"}
RESERVED_DATA_PREFIXES = ("google.", "gcm.")
# FCM's limit on the notification + data payload.
# https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages
MAX_PAYLOAD_BYTES = 4096


@dataclass(frozen=True)
class Violation:
    """The first thing wrong with a request body: the field path and FCM's description."""

    field: str
    description: str


class _Invalid(Exception):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.violation = Violation(field, description)


Check = Callable[[str, Any], None]


def _type_error(path: str, proto_type: str, value: Any) -> _Invalid:
    return _Invalid(path, f"Invalid value at '{path}' ({proto_type}), {json.dumps(value)[:100]}")


def _string(path: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _type_error(path, "TYPE_STRING", value)


def _bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _type_error(path, "TYPE_BOOL", value)


def _number(path: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(path, "TYPE_INT32", value)


def _duration(path: str, value: Any) -> None:
    if not isinstance(value, str) or not DURATION_RE.match(value):
        raise _type_error(path, "type.googleapis.com/google.protobuf.Duration", value)


def _any_object(path: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _type_error(path, "type.googleapis.com/google.protobuf.Struct", value)


def _string_map(path: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _type_error(path, "TYPE_MESSAGE", value)
    for index, item in enumerate(value.values()):
        if not isinstance(item, str):
            raise _type_error(f"{path}[{index}].value", "TYPE_STRING", item)


def _list_of(check: Check) -> Check:
    def checker(path: str, value: Any) -> None:
        if not isinstance(value, list):
            raise _type_error(path, "TYPE_LIST", value)
        for index, item in enumerate(value):
            check(f"{path}[{index}]", item)

    return checker


def _enum(proto_type: str, allowed: set[str]) -> Check:
    def checker(path: str, value: Any) -> None:
        if not isinstance(value, str) or value.upper() not in allowed:
            raise _type_error(path, proto_type, value)

    return checker


def _object(fields: Mapping[str, Check]) -> Check:
    def checker(path: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise _type_error(path, "TYPE_MESSAGE", value)
        for key, item in value.items():
            check = fields.get(key)
            if check is None:
                raise _Invalid(
                    path,
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field.",
                )
            if item is not None:
                check(f"{path}.{key}" if path else key, item)

    return checker


_ANDROID_NOTIFICATION = _object(
    {
        **dict.fromkeys(
            [
                "title", "body", "icon", "color", "sound", "tag", "click_action", "body_loc_key",
                "title_loc_key", "channel_id", "ticker", "event_time", "image", "notification_priority",
                "visibility", "proxy",
            ],
            _string,
        ),
        **dict.fromkeys(
            ["sticky", "local_only", "default_sound", "default_vibrate_timings", "default_light_settings"],
            _bool,
        ),
        "body_loc_args": _list_of(_string),
        "title_loc_args": _list_of(_string),
        "vibrate_timings": _list_of(_duration),
        "light_settings": _any_object,
        "notification_count": _number,
    }
)  # fmt: skip

_MESSAGE = _object(
    {
        "name": _string,
        "token": _string,
        "topic": _string,
        "condition": _string,
        "fid": _string,
        "data": _string_map,
        "notification": _object({"title": _string, "body": _string, "image": _string}),
        "android": _object(
            {
                "collapse_key": _string,
                "priority": _enum("type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
                                  ANDROID_PRIORITIES),
                "ttl": _duration,
                "restricted_package_name": _string,
                "data": _string_map,
                "notification": _ANDROID_NOTIFICATION,
                "fcm_options": _object({"analytics_label": _string}),
                "direct_boot_ok": _bool,
                "bandwidth_constrained_ok": _bool,
                "restricted_satellite_ok": _bool,
            }
        ),
        "webpush": _object(
            {
                "headers": _string_map,
                "data": _string_map,
                "notification": _any_object,
                "fcm_options": _object({"link": _string, "analytics_label": _string}),
            }
        ),
        "apns": _object(
            {
                "headers": _string_map,
                "payload": _any_object,
                "fcm_options": _object({"analytics_label": _string, "image": _string}),
                "live_activity_token": _string,
            }
        ),
        "fcm_options": _object({"analytics_label": _string}),
    }
)  # fmt: skip

_BODY = _object({"message": _MESSAGE, "validate_only": _bool})


def validate_send_body(body: Any) -> Violation | None:
    """The first violation in a parsed ``messages:send`` body, or None when FCM would accept it."""
    try:
        if not isinstance(body, dict):
            raise _type_error("", "TYPE_MESSAGE", body)
        if not isinstance(body.get("message"), dict):
            raise _Invalid("message", "Request contains an invalid argument: 'message' is required.")
        _BODY("", body)
        _semantics(body["message"])
    except _Invalid as invalid:
        return invalid.violation
    return None


def _semantics(message: dict[str, Any]) -> None:
    targets = [key for key in ("token", "topic", "condition", "fid") if message.get(key) is not None]
    if not targets:
        raise _Invalid("message", "Recipient of the message is not set.")
    if len(targets) > 1:
        raise _Invalid(
            "message",
            f"Invalid value at 'message' (oneof), oneof field 'target' is already set. "
            f"Cannot set '{targets[1]}'",
        )
    if "token" in targets and not message["token"].strip():
        raise _Invalid("message.token", "The registration token is not a valid FCM registration token")
    if "topic" in targets and not TOPIC_RE.match(message["topic"]):
        raise _Invalid("message.topic", f"Invalid topic name: {message['topic']!r}")
    for key in message.get("data") or {}:
        if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
            raise _Invalid("message.data", f"Invalid data payload key: {key}")
    _labels(message)
    _apns(message.get("apns") or {})
    _webpush(message.get("webpush") or {})
    size = len(json.dumps({"data": message.get("data"), "notification": message.get("notification")}))
    if size > MAX_PAYLOAD_BYTES:
        raise _Invalid("message", f"Message is too big: {size} bytes (limit {MAX_PAYLOAD_BYTES}).")


def _labels(message: dict[str, Any]) -> None:
    for path, options in (
        ("message.fcm_options", message.get("fcm_options")),
        ("message.android.fcm_options", (message.get("android") or {}).get("fcm_options")),
        ("message.apns.fcm_options", (message.get("apns") or {}).get("fcm_options")),
        ("message.webpush.fcm_options", (message.get("webpush") or {}).get("fcm_options")),
    ):
        label = (options or {}).get("analytics_label")
        if label is not None and not ANALYTICS_LABEL_RE.match(label):
            raise _Invalid(f"{path}.analytics_label", f"Invalid analytics_label: {label!r}")


def _apns(apns: dict[str, Any]) -> None:
    headers = apns.get("headers") or {}
    path = "message.apns.headers"
    if "apns-priority" in headers and headers["apns-priority"] not in APNS_PRIORITIES:
        raise _Invalid(f"{path}.apns-priority", f"Invalid APNs priority: {headers['apns-priority']!r}")
    if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
        raise _Invalid(f"{path}.apns-expiration", f"Invalid APNs expiration: {headers['apns-expiration']!r}")
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        raise _Invalid(f"{path}.apns-collapse-id", "apns-collapse-id must not exceed 64 bytes.")
    aps = (apns.get("payload") or {}).get("aps")
    if aps is not None:
        if not isinstance(aps, dict):
            raise _type_error("message.apns.payload.aps", "type.googleapis.com/google.protobuf.Struct", aps)
        if "badge" in aps and (isinstance(aps["badge"], bool) or not isinstance(aps["badge"], int | float)):
            raise _Invalid("message.apns.payload.aps.badge", "Invalid APNs badge: must be a number.")
        if "sound" in aps and not isinstance(aps["sound"], str | dict):
            raise _Invalid("message.apns.payload.aps.sound", "Invalid APNs sound.")


def _webpush(webpush: dict[str, Any]) -> None:
    headers = webpush.get("headers") or {}
    path = "message.webpush.headers"
    if "TTL" in headers and not headers["TTL"].isdigit():
        raise _Invalid(f"{path}.TTL", f"Invalid Web Push TTL: {headers['TTL']!r}")
    if "Urgency" in headers and headers["Urgency"] not in WEBPUSH_URGENCY:
        raise _Invalid(f"{path}.Urgency", f"Invalid Web Push Urgency: {headers['Urgency']!r}")
    if "Topic" in headers and not WEBPUSH_TOPIC_RE.match(headers["Topic"]):
        raise _Invalid(f"{path}.Topic", f"Invalid Web Push Topic: {headers['Topic']!r}")
    link = (webpush.get("fcm_options") or {}).get("link")
    if link is not None and not link.startswith("https://"):
        raise _Invalid("message.webpush.fcm_options.link", "The link must be an HTTPS URL.")
    actions = (webpush.get("notification") or {}).get("actions")
    if actions is not None and not (
        isinstance(actions, list) and all(isinstance(a, dict) and "action" in a for a in actions)
    ):
        raise _Invalid("message.webpush.notification.actions", "Invalid Web Push notification actions.")
