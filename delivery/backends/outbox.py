"""The development backend: every message is stored, fully rendered, as the device inbox.

Nothing leaves the machine. Each message becomes one ``OutboxMessage`` whose payload
is the exact FCM HTTP v1 request body, so a new install shows real results in the
admin without a Firebase project.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.utils import timezone

from audiences.models import Device
from delivery.backends import MAX_BATCH, PushMessage, SendResult
from delivery.backends.fcm_v1 import fcm_v1_body
from delivery.models import OutboxMessage

TITLE_MAX = OutboxMessage._meta.get_field("title").max_length or 1000


class OutboxBackend:
    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Store the messages in one INSERT; every one succeeds ("outbox-<uuid>" ids).

        A message without ``device_id`` is matched to its device by token (one more
        query); one whose token matches no device is reported INVALID_ARGUMENT.
        """
        if len(messages) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} messages per send, got {len(messages)}")
        if not messages:
            return []
        unknown = {m.token for m in messages if m.device_id is None}
        by_token = (
            dict(Device.objects.filter(token__in=unknown).values_list("token", "pk")) if unknown else {}
        )
        now = timezone.now()
        rows: list[OutboxMessage] = []
        results: list[SendResult] = []
        for message in messages:
            device_id = message.device_id if message.device_id is not None else by_token.get(message.token)
            if device_id is None:
                results.append(
                    SendResult(
                        ok=False,
                        error_code="INVALID_ARGUMENT",
                        error="No device has this token.",
                        token_invalid=True,
                    )
                )
                continue
            message_id = f"outbox-{uuid.uuid4().hex}"
            rows.append(
                OutboxMessage(
                    delivery_id=message.delivery_id,
                    device_id=device_id,
                    message_id=message_id,
                    title=message.title[:TITLE_MAX],
                    body=message.body,
                    payload=fcm_v1_body(message, now=now),
                    is_test=message.is_test,
                )
            )
            results.append(SendResult(ok=True, message_id=message_id))
        OutboxMessage.objects.bulk_create(rows)
        return results
