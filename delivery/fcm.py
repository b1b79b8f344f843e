"""The ``fcm`` push backend: Firebase Cloud Messaging through the firebase-admin SDK (HTTP v1).

The only module that imports ``firebase_admin``. ``FcmBackend.send`` hands up to 500
messages to ``messaging.send_each`` (one HTTP request per message on the SDK's thread
pool) and turns every response into a ``SendResult`` the delivery engine can act on
without knowing FCM: ``ok``, ``token_invalid`` (deactivate the device), ``retryable``
(send again later, not before ``retry_after``), or ``fatal`` (the run cannot succeed as
configured: pause it, deactivate nothing). Error codes:
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode

What we change in the SDK, all of it private API (firebase-admin 7.7; re-check on upgrade):

- **Endpoint.** The SDK has no public switch for the FCM URL: we set the class attribute
  ``messaging._MessagingService.FCM_URL`` from ``settings.FCM_ENDPOINT`` before our app's
  messaging service is created, and check the service took it. The OAuth token endpoint
  comes from the credentials' ``token_uri``, so a loopback stub serves both.
- **No SDK retries.** The SDK's HTTP adapter retries 500/503 up to four times with
  0.5 to 4 s sleeps, and urllib3 also sleeps out a 429's Retry-After (60 s!) — all inside
  the worker, blocking the batch, and each retry is another request FCM counts. We mount
  our own adapter on the endpoint (``_client.session``) that retries only a failed
  *connect* (nothing was sent) and nothing else, so the engine's row-based, non-blocking
  backoff is the one retry policy. The adapter also keeps a bounded keep-alive pool
  instead of opening a connection per thread.
- **One app per worker process.** A firebase_admin ``App`` (and its HTTP session) is
  created lazily per process id — a forked Celery worker never reuses its parent's
  sockets — and re-created if ``FIREBASE_CREDENTIALS``/``FCM_ENDPOINT`` change.
- **Access token up front.** The credential is refreshed once, before ``send_each``,
  under a lock: otherwise 500 SDK threads may each fetch a token, and a token failure
  would surface as one opaque ``UnknownError`` for the whole batch.
- **Registration tokens.** 7.x deprecates ``Message(token=…)`` in favour of ``fid``;
  NotifyHub devices register FCM registration tokens, which FCM still takes as
  ``message.token``. We set the attribute after construction, which sends the same JSON
  without the per-message DeprecationWarning.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import itertools
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import requests
import requests.adapters
from django.conf import settings
from firebase_admin import credentials, exceptions, messaging
from urllib3.util.retry import Retry

from delivery.backends import MAX_BATCH, PushBackendUnavailable, PushMessage, SendResult

# Per request (connect + read); the SDK's default is 120 s.
HTTP_TIMEOUT_SECONDS = 30.0
# "If the Retry-After header is not present, wait at least 60 seconds" (FCM's guidance for 429).
DEFAULT_RETRY_AFTER_SECONDS = 60.0
# Keep-alive connections per process. send_each runs one thread per message; the threads
# wait for a free connection instead of opening (and discarding) one each.
POOL_SIZE = 100
APNS_PRIORITY = {"high": "10", "normal": "5"}
WEBPUSH_TOPIC_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
# What FCM says when an INVALID_ARGUMENT is about the registration token rather than the payload.
TOKEN_ERROR_RE = re.compile(r"registration[ -]token", re.IGNORECASE)

# Only a failed connect is retried (the request never left); reads, statuses and
# Retry-After are the engine's business.
NO_RETRY = Retry(
    total=None,
    connect=1,
    read=0,
    status=0,
    other=0,
    redirect=0,
    status_forcelist=(),
    allowed_methods=None,
    raise_on_status=False,
    respect_retry_after_header=False,
)


@dataclass
class _Firebase:
    """One process's firebase_admin app, its OAuth credential and how to refresh it."""

    pid: int
    key: tuple[str, str]
    app: firebase_admin.App
    credential: Any  # google.auth.credentials.Credentials
    auth_request: google.auth.transport.requests.Request
    refresh_lock: threading.Lock


class _Registry:
    """The process's one firebase_admin app, shared by every FcmBackend instance."""

    def __init__(self) -> None:
        self.firebase: _Firebase | None = None
        self.lock = threading.Lock()
        self.lock_pid = os.getpid()
        self.names = itertools.count(1)

    def current(self) -> _Firebase:
        """This process's app for the current settings, created on first use."""
        pid = os.getpid()
        key = (str(settings.FIREBASE_CREDENTIALS), str(settings.FCM_ENDPOINT).rstrip("/"))
        firebase = self.firebase
        if firebase is not None and firebase.pid == pid and firebase.key == key:
            return firebase
        if self.lock_pid != pid:  # forked: the parent's lock may have been held at fork time
            self.lock, self.lock_pid = threading.Lock(), pid
        with self.lock:
            firebase = self.firebase
            if firebase is None or firebase.pid != pid or firebase.key != key:
                # The parent's app (after a fork) is left alone: its sockets are the parent's.
                if firebase is not None and firebase.pid == pid:
                    _delete_app(firebase.app)
                firebase = self.firebase = self._create(pid=pid, key=key)
            return firebase

    def _create(self, *, pid: int, key: tuple[str, str]) -> _Firebase:
        credentials_path, endpoint = key
        if not credentials_path:
            raise ValueError("FIREBASE_CREDENTIALS is not set")
        certificate = credentials.Certificate(credentials_path)
        app = firebase_admin.initialize_app(
            certificate,
            options={"httpTimeout": HTTP_TIMEOUT_SECONDS},
            name=f"notifyhub-fcm-{pid}-{next(self.names)}",
        )
        url = f"{endpoint}/v1/projects/{{0}}/messages:send"
        messaging._MessagingService.FCM_URL = url
        service = messaging._get_messaging_service(app)
        if service._fcm_url != url.format(app.project_id):  # pragma: no cover - an SDK upgrade moved it
            raise RuntimeError("firebase-admin no longer takes its FCM URL from _MessagingService.FCM_URL")
        session = service._client.session
        session.mount(
            f"{endpoint}/",
            requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=POOL_SIZE, pool_block=True, max_retries=NO_RETRY
            ),
        )
        return _Firebase(
            pid=pid,
            key=key,
            app=app,
            credential=session.credentials,
            auth_request=google.auth.transport.requests.Request(),
            refresh_lock=threading.Lock(),
        )


_registry = _Registry()


class FcmBackend:
    """Sends through firebase-admin. Instances are cheap: the app is per process, not per instance."""

    def __init__(self) -> None:
        """Refuse up front (PushBackendUnavailable) when there is no credentials file to read.

        ``get_backend`` builds the backend when the admin starts a test send, so a
        marketer hears about it there rather than from a paused run.
        """
        path = str(settings.FIREBASE_CREDENTIALS)
        if not path or not Path(path).is_file():
            raise PushBackendUnavailable(
                f"FIREBASE_CREDENTIALS={path!r} is not a file: set it to the path of the Firebase "
                "service-account JSON (Firebase console → Project settings → Service accounts), or "
                "set NOTIFYHUB_PUSH_BACKEND=outbox."
            )

    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Send up to 500 messages; one result per message, in order; never raises for FCM.

        Transport failures, auth failures and messages the SDK refuses to encode all come
        back as results. Raises ValueError only for more than ``MAX_BATCH`` messages.
        """
        if len(messages) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} messages per send, got {len(messages)}")
        if not messages:
            return []
        try:
            firebase = _registry.current()
        except (ValueError, OSError) as error:
            path = settings.FIREBASE_CREDENTIALS
            return _all(
                len(messages),
                SendResult(
                    ok=False,
                    error_code="CONFIG",
                    error=f"FIREBASE_CREDENTIALS={path!r} is not a usable service-account file: {error}",
                    fatal=True,
                ),
            )
        failure = _ensure_access_token(firebase)
        if failure is not None:
            return _all(len(messages), failure)
        now = time.time()
        return self._send_each(firebase, [fcm_message(message, now=now) for message in messages])

    def _send_each(self, firebase: _Firebase, built: list[messaging.Message]) -> list[SendResult]:
        try:
            batch = messaging.send_each(built, app=firebase.app)
        except ValueError:
            return self._send_encodable(firebase, built)
        except exceptions.FirebaseError as error:
            # The whole batch failed around the HTTP calls (e.g. a token refresh in a thread).
            return _all(len(built), _batch_failure(error))
        return [result_from_response(response) for response in batch.responses]

    def _send_encodable(self, firebase: _Firebase, built: list[messaging.Message]) -> list[SendResult]:
        """The SDK refused to encode some message: report those, send the others."""
        results: list[SendResult | None] = []
        sendable: list[messaging.Message] = []
        for message in built:
            try:
                messaging._MessagingService.encode_message(message)
            except ValueError as error:
                results.append(
                    SendResult(
                        ok=False,
                        error_code="INVALID_ARGUMENT",
                        error=f"firebase-admin refused the message: {error}",
                        fatal=True,
                    )
                )
            else:
                results.append(None)
                sendable.append(message)
        sent = iter(self._send_each(firebase, sendable) if sendable else [])
        return [result if result is not None else next(sent) for result in results]

    @property
    def app(self) -> firebase_admin.App:
        """This process's firebase_admin app (created if needed)."""
        return _registry.current().app


def _delete_app(app: firebase_admin.App) -> None:
    # ValueError: already gone; RuntimeError: closing its async client inside a running loop.
    with contextlib.suppress(ValueError, RuntimeError):
        firebase_admin.delete_app(app)


def _all(count: int, result: SendResult) -> list[SendResult]:
    return [result] * count


def _ensure_access_token(firebase: _Firebase) -> SendResult | None:
    """Fetch an OAuth access token if the credential has none (or it expires soon)."""
    credential = firebase.credential
    if credential.valid:
        return None
    with firebase.refresh_lock:
        if credential.valid:
            return None
        try:
            credential.refresh(firebase.auth_request)
        except google.auth.exceptions.RefreshError as error:
            return _refresh_failure(error)
        except google.auth.exceptions.TransportError as error:
            return SendResult(
                ok=False, error_code="TRANSPORT", error=f"OAuth token endpoint: {error}", retryable=True
            )
    return None


def _refresh_failure(error: google.auth.exceptions.RefreshError) -> SendResult:
    if getattr(error, "retryable", False):
        return SendResult(
            ok=False, error_code="UNAVAILABLE", error=f"OAuth token endpoint: {error}", retryable=True
        )
    return SendResult(
        ok=False,
        error_code="AUTH",
        error=f"The OAuth token endpoint refused the service account: {error}",
        fatal=True,
    )


def _batch_failure(error: exceptions.FirebaseError) -> SendResult:
    cause = error.cause
    if isinstance(cause, google.auth.exceptions.RefreshError):
        return _refresh_failure(cause)
    return SendResult(ok=False, error_code="TRANSPORT", error=str(error), retryable=True)


# --- message building ---------------------------------------------------------------


def fcm_message(message: PushMessage, *, now: float) -> messaging.Message:
    """The firebase-admin Message for a PushMessage sent at ``now`` (UNIX time).

    Mirrors ``delivery.backends.fcm_v1.fcm_v1_body`` (what the outbox stores), plus the
    collapse key as Android and Web notification ``tag`` so a rare duplicate replaces
    the first notification instead of stacking.
    """
    ttl = max(0, int(message.ttl_seconds))
    collapse = message.collapse_key or None
    image = message.image_url or None
    android = messaging.AndroidConfig(
        collapse_key=collapse,
        priority=message.priority,
        ttl=ttl,
        notification=messaging.AndroidNotification(
            channel_id=message.android.get("channel_id") or None,
            icon=message.android.get("icon") or None,
            click_action=message.android.get("click_action") or None,
            tag=collapse,
        ),
    )
    apns_headers = {
        "apns-priority": APNS_PRIORITY[message.priority],
        # 0: deliver now or never; otherwise the absolute UNIX time it expires.
        "apns-expiration": str(int(now) + ttl) if ttl else "0",
    }
    if collapse:
        apns_headers["apns-collapse-id"] = collapse[:64]
    apns = messaging.APNSConfig(
        headers=apns_headers,
        payload=messaging.APNSPayload(
            aps=messaging.Aps(
                sound=message.apns.get("sound") or None,
                badge=message.apns.get("badge"),
                # iOS downloads the image in a notification service extension.
                mutable_content=True if image else None,
            )
        ),
        fcm_options=messaging.APNSFCMOptions(image=image) if image else None,
    )
    # RFC 8030 §5: TTL in seconds, Urgency, and Topic (≤ 32 URL-safe base64 characters)
    # which replaces a pending message with the same topic.
    webpush_headers = {"TTL": str(ttl), "Urgency": message.priority}
    if collapse and WEBPUSH_TOPIC_RE.match(collapse[:32]):
        webpush_headers["Topic"] = collapse[:32]
    actions = [
        messaging.WebpushNotificationAction(action=str(item["action"]), title=str(item["title"]))
        for item in message.webpush.get("actions") or []
    ]
    link = message.click_url if message.click_url.startswith("https://") else None  # FCM: HTTPS only
    webpush = messaging.WebpushConfig(
        headers=webpush_headers,
        notification=messaging.WebpushNotification(
            icon=message.webpush.get("icon") or None, actions=actions or None, tag=collapse
        ),
        fcm_options=messaging.WebpushFCMOptions(link=link) if link else None,
    )
    built = messaging.Message(
        notification=messaging.Notification(title=message.title, body=message.body, image=image),
        data=dict(message.data) or None,
        android=android,
        apns=apns,
        webpush=webpush,
        fcm_options=messaging.FCMOptions(analytics_label=message.analytics_label)
        if message.analytics_label
        else None,
    )
    built.token = message.token  # see the module docstring: a registration token, not an fid
    return built


# --- outcome mapping ---------------------------------------------------------------


def result_from_response(response: messaging.SendResponse) -> SendResult:
    """Map one ``SendResponse`` of ``send_each`` onto a SendResult."""
    if response.success:
        return SendResult(ok=True, message_id=response.message_id)
    return result_from_error(response.exception)


def result_from_error(error: exceptions.FirebaseError) -> SendResult:
    """Classify an FCM error: dead token, retry later, pause the run, or (4xx) give up."""
    text = str(error)
    http = error.http_response
    if isinstance(error, messaging.UnregisteredError):
        return SendResult(ok=False, error_code="UNREGISTERED", error=text, token_invalid=True)
    if isinstance(error, messaging.SenderIdMismatchError):
        return SendResult(ok=False, error_code="SENDER_ID_MISMATCH", error=text, token_invalid=True)
    if isinstance(error, exceptions.ResourceExhaustedError):  # QuotaExceededError included
        retry_after = _retry_after(http)
        return SendResult(
            ok=False,
            error_code="QUOTA_EXCEEDED",
            error=text,
            retryable=True,
            retry_after=DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after,
        )
    if isinstance(error, exceptions.InvalidArgumentError):
        if _names_the_token(error):
            return SendResult(ok=False, error_code="INVALID_ARGUMENT", error=text, token_invalid=True)
        return SendResult(ok=False, error_code="INVALID_ARGUMENT", error=text, fatal=True)
    if isinstance(error, exceptions.UnauthenticatedError | exceptions.PermissionDeniedError):
        # 401 (incl. THIRD_PARTY_AUTH_ERROR: APNs/Web Push credentials) and 403 other than
        # SENDER_ID_MISMATCH: our credentials or project are wrong, not the device.
        return SendResult(ok=False, error_code="AUTH", error=f"{_fcm_code(error)}: {text}", fatal=True)
    if http is None:  # no HTTP answer: refused/dropped connection, timeout
        return SendResult(ok=False, error_code="TRANSPORT", error=text, retryable=True)
    if isinstance(error, exceptions.UnavailableError):
        return SendResult(
            ok=False, error_code="UNAVAILABLE", error=text, retryable=True, retry_after=_retry_after(http)
        )
    if isinstance(error, exceptions.InternalError):
        return SendResult(ok=False, error_code="INTERNAL", error=text, retryable=True)
    if http.status_code >= 500 or http.status_code == 408:
        return SendResult(
            ok=False, error_code=_fcm_code(error), error=text, retryable=True, retry_after=_retry_after(http)
        )
    # Any other 4xx (e.g. 404 without UNREGISTERED: a wrong project or endpoint) is a
    # configuration problem that every message of the run would hit.
    return SendResult(ok=False, error_code=_fcm_code(error), error=text, fatal=True)


def _fcm_code(error: exceptions.FirebaseError) -> str:
    """FCM's errorCode from the response details, else the RPC status (``error.code``)."""
    for detail in _error_body(error).get("details", []):
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.code)


def _error_body(error: exceptions.FirebaseError) -> dict[str, Any]:
    http = error.http_response
    if http is None:
        return {}
    try:
        body = http.json()
    except ValueError:
        return {}
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def _names_the_token(error: exceptions.InvalidArgumentError) -> bool:
    """Whether a 400 is about the registration token (dead device) rather than the payload."""
    if TOKEN_ERROR_RE.search(str(error)):
        return True
    for detail in _error_body(error).get("details", []):
        for violation in (detail.get("fieldViolations") or []) if isinstance(detail, dict) else []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return False


def _retry_after(http: requests.Response | None) -> float | None:
    """The response's Retry-After in seconds (delta-seconds or an HTTP date), if any."""
    value = http.headers.get("Retry-After", "").strip() if http is not None else ""
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
