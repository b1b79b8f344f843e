"""A loopback Firebase Cloud Messaging stub: HTTP v1 ``messages:send``, OAuth, fault injection.

Tests, benchmarks and dry runs point the real firebase-admin SDK at it
(``FCM_ENDPOINT`` = its URL, ``FIREBASE_CREDENTIALS`` = a service account whose
``token_uri`` is its ``/token``). Run it with ``manage.py fcm_stub --port N
--write-credentials PATH`` (or ``python -m delivery.fcm_stub``, no Django needed).

Endpoints:

- ``POST /v1/projects/{project}/messages:send`` — validates the request like FCM
  (Bearer token the stub issued; ``{"message": …}`` with exactly one target, string
  data, ``ttl`` like ``"3600s"``, platform headers…), answers
  ``{"name": "projects/{project}/messages/<id>"}`` or FCM's error JSON, and logs every
  accepted message.
- ``POST /token`` — the OAuth 2.0 JWT-bearer grant: ``{"access_token", "expires_in", "token_type"}``.
- Control: ``POST /__control`` (a fault plan, see :class:`FaultPlan`), ``GET /__faults``,
  ``GET /__log?since=N`` (accepted messages), ``GET /__requests?since=N`` (every send
  request with its arrival time and outcome — to check "no request before
  Retry-After"), ``GET /__stats``, ``POST /__reset`` (``{"log": true, "faults": true}``).
  :class:`FcmStubClient` wraps them.

Standalone on purpose (stdlib + ``cryptography``): it imports nothing from Django.
"""

from delivery.fcm_stub.client import FcmStubClient
from delivery.fcm_stub.credentials import DEFAULT_PROJECT, service_account_info, write_service_account
from delivery.fcm_stub.faults import FaultPlan, FaultPlanError
from delivery.fcm_stub.server import FcmStubServer

__all__ = [
    "DEFAULT_PROJECT",
    "FaultPlan",
    "FaultPlanError",
    "FcmStubClient",
    "FcmStubServer",
    "service_account_info",
    "write_service_account",
]
