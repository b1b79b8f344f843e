"""A PushMessage as FCM's HTTP v1 API takes it (``POST …/messages:send`` body).

The outbox stores exactly this, so the device inbox shows what FCM would have
received. Field reference:
https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages
Platform headers: APNs priority/expiration/collapse-id
(https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns)
and Web Push TTL/Urgency/Topic (RFC 8030 §5).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from delivery.backends import PushMessage

APNS_PRIORITY = {"high": "10", "normal": "5"}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values: FCM rejects some empty objects and they say nothing."""
    return {key: value for key, value in values.items() if value not in ("", None, {}, [])}


def fcm_v1_body(message: PushMessage, *, now: dt.datetime) -> dict[str, Any]:
    """The JSON body FCM's ``messages:send`` would get for ``message`` sent at ``now``."""
    ttl = max(0, int(message.ttl_seconds))
    image = message.image_url
    android = _compact(
        {
            "collapse_key": message.collapse_key,
            "priority": message.priority.upper(),
            "ttl": f"{ttl}s",
            "notification": _compact(
                {"channel_id": message.android.get("channel_id"), "icon": message.android.get("icon")}
            ),
        }
    )
    aps = _compact(
        {
            "sound": message.apns.get("sound"),
            "badge": message.apns.get("badge"),
            # iOS downloads the image in a notification service extension.
            "mutable-content": 1 if image else None,
        }
    )
    apns = _compact(
        {
            "headers": _compact(
                {
                    "apns-priority": APNS_PRIORITY[message.priority],
                    # 0 = deliver now or never; otherwise an absolute UNIX time.
                    "apns-expiration": str(int(now.timestamp()) + ttl) if ttl else "0",
                    "apns-collapse-id": message.collapse_key[:64],
                }
            ),
            "payload": {"aps": aps} if aps else None,
            "fcm_options": _compact({"image": image}),
        }
    )
    link = message.click_url if message.click_url.startswith("https://") else ""
    webpush = _compact(
        {
            "headers": _compact(
                {"TTL": str(ttl), "Urgency": message.priority, "Topic": message.collapse_key[:32]}
            ),
            "notification": _compact(
                {"icon": message.webpush.get("icon"), "actions": message.webpush.get("actions")}
            ),
            # FCM accepts only HTTPS links for web clicks.
            "fcm_options": _compact({"link": link}),
        }
    )
    body = _compact(
        {
            "token": message.token,
            "notification": _compact({"title": message.title, "body": message.body, "image": image}),
            "data": dict(message.data),
            "android": android,
            "apns": apns,
            "webpush": webpush,
            "fcm_options": _compact({"analytics_label": message.analytics_label}),
        }
    )
    return {"message": body}
