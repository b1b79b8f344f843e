"""What the stub answers instead of success: FCM's error responses and the fault plan.

Error bodies follow FCM HTTP v1 exactly, because firebase-admin picks its exception
class from them: ``error.status`` gives the generic class (NOT_FOUND → NotFoundError…)
and the ``google.firebase.fcm.v1.FcmError`` detail's ``errorCode`` the FCM-specific one
(UNREGISTERED → UnregisteredError, SENDER_ID_MISMATCH → SenderIdMismatchError,
QUOTA_EXCEEDED → QuotaExceededError). https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode

Rate-based faults are deterministic: whether the n-th request for a token fails is a
hash of (seed, token, n), so the same plan gives the same outcomes whatever order
concurrent requests arrive in.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

# Fault kinds a token, a token prefix or a rate can name.
UNREGISTERED = "UNREGISTERED"
SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - 400 INVALID_ARGUMENT naming the registration token
INVALID_PAYLOAD = "INVALID_PAYLOAD"  # 400 INVALID_ARGUMENT about the message payload
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
UNAUTHENTICATED = "UNAUTHENTICATED"
THIRD_PARTY_AUTH_ERROR = "THIRD_PARTY_AUTH_ERROR"
DROP = "DROP"  # close the connection without answering
KINDS = frozenset(
    {
        UNREGISTERED, SENDER_ID_MISMATCH, INVALID_TOKEN, INVALID_PAYLOAD, QUOTA_EXCEEDED,
        UNAVAILABLE, INTERNAL, UNAUTHENTICATED, THIRD_PARTY_AUTH_ERROR, DROP,
    }
)  # fmt: skip
RATE_KINDS = frozenset({UNAVAILABLE, INTERNAL, DROP})

INVALID_TOKEN_MESSAGE = "The registration token is not a valid FCM registration token"  # noqa: S105


class FaultPlanError(ValueError):
    """A control request or CLI flag describes no valid fault plan."""


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def code(self) -> str:
        """The name the stub counts this reply under (FcmError code, else the RPC status)."""
        for detail in self.body["error"].get("details", []):
            if detail.get("@type") == FCM_ERROR_TYPE:
                return str(detail["errorCode"])
        return str(self.body["error"]["status"])


def error_reply(
    status: int,
    rpc_status: str,
    message: str,
    *,
    fcm_code: str | None = None,
    field_violation: tuple[str, str] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> ErrorReply:
    """An error response in Google's JSON error format, with FCM's details."""
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": fcm_code})
    if field_violation:
        details.append(
            {
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [{"field": field_violation[0], "description": field_violation[1]}],
            }
        )
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details:
        error["details"] = details
    return ErrorReply(status, {"error": error}, headers)


def fault_reply(kind: str, *, retry_after: str | None = None) -> ErrorReply:
    """FCM's response for an injected fault (not DROP: that one has no response)."""
    if kind == UNREGISTERED:
        return error_reply(404, "NOT_FOUND", "Requested entity was not found.", fcm_code=UNREGISTERED)
    if kind == SENDER_ID_MISMATCH:
        return error_reply(403, "PERMISSION_DENIED", "SenderId mismatch", fcm_code=SENDER_ID_MISMATCH)
    if kind == INVALID_TOKEN:
        return error_reply(400, "INVALID_ARGUMENT", INVALID_TOKEN_MESSAGE, fcm_code="INVALID_ARGUMENT")
    if kind == INVALID_PAYLOAD:
        description = "Invalid value at 'message.notification.image' (TYPE_STRING): unsupported image URL"
        return error_reply(
            400,
            "INVALID_ARGUMENT",
            description,
            fcm_code="INVALID_ARGUMENT",
            field_violation=("message.notification.image", description),
        )
    if kind == QUOTA_EXCEEDED:
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        return error_reply(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
            fcm_code=QUOTA_EXCEEDED,
            headers=headers,
        )
    if kind == UNAVAILABLE:
        return error_reply(503, "UNAVAILABLE", "The service is currently unavailable.", fcm_code=UNAVAILABLE)
    if kind == INTERNAL:
        return error_reply(500, "INTERNAL", "Internal error encountered.", fcm_code=INTERNAL)
    if kind == UNAUTHENTICATED:
        return unauthenticated_reply()
    if kind == THIRD_PARTY_AUTH_ERROR:
        return error_reply(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            fcm_code=THIRD_PARTY_AUTH_ERROR,
        )
    raise FaultPlanError(f"no reply for fault {kind!r}")


def unauthenticated_reply() -> ErrorReply:
    return error_reply(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
    )


@dataclass
class TokenFault:
    kind: str
    times: int | None = None  # None: every request for the token; else the first N

    def to_json(self) -> dict[str, Any]:
        return {"error": self.kind, "times": self.times}


def _kind(value: Any, *, allowed: frozenset[str] = KINDS) -> str:
    kind = str(value).upper()
    if kind not in allowed:
        raise FaultPlanError(f"unknown fault {value!r}; use one of {', '.join(sorted(allowed))}")
    return kind


def _token_fault(value: Any) -> TokenFault:
    if isinstance(value, dict):
        times = value.get("times")
        if times is not None and (not isinstance(times, int) or times < 0):
            raise FaultPlanError(f"'times' must be a non-negative integer, got {times!r}")
        return TokenFault(_kind(value.get("error")), times)
    return TokenFault(_kind(value))


@dataclass
class FaultPlan:
    """Everything the stub is told to get wrong; changed through ``POST /__control``.

    JSON form (every key optional; a control request replaces the keys it names)::

        {"tokens": {"tok-1": "UNREGISTERED", "tok-2": {"error": "UNAVAILABLE", "times": 2}},
         "token_prefixes": {"dead-": "UNREGISTERED"},
         "rates": {"UNAVAILABLE": 0.2, "INTERNAL": 0.1, "DROP": 0.05}, "seed": 0,
         "quota": {"requests": 10, "seconds": 5.0, "retry_after": 3, "retry_after_format": "seconds"},
         "auth_failure": false, "token_failure": false, "latency_ms": 0}

    ``quota``: 429 QUOTA_EXCEEDED for the next ``requests`` send requests and/or for
    ``seconds`` from now; ``retry_after`` null sends no Retry-After header;
    ``retry_after_format`` "date" sends it as an HTTP date. ``auth_failure``: every send
    gets 401; ``token_failure``: the OAuth token endpoint refuses the grant.
    """

    tokens: dict[str, TokenFault] = field(default_factory=dict)
    token_prefixes: dict[str, str] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    quota_requests: int = 0
    quota_until: float = 0.0  # time.monotonic() deadline
    retry_after: int | None = 60
    retry_after_format: str = "seconds"
    auth_failure: bool = False
    token_failure: bool = False
    latency_ms: float = 0.0

    def update(self, plan: dict[str, Any]) -> None:
        """Apply a control request (validated in full before anything changes)."""
        if not isinstance(plan, dict):
            raise FaultPlanError("the fault plan must be a JSON object")
        unknown = set(plan) - {
            "tokens", "token_prefixes", "rates", "seed", "quota", "auth_failure", "token_failure",
            "latency_ms",
        }  # fmt: skip
        if unknown:
            raise FaultPlanError(f"unknown fault plan keys: {', '.join(sorted(unknown))}")
        staged = FaultPlan(**self.__dict__)
        if "tokens" in plan:
            staged.tokens = {str(token): _token_fault(value) for token, value in dict(plan["tokens"]).items()}
        if "token_prefixes" in plan:
            staged.token_prefixes = {str(p): _kind(v) for p, v in dict(plan["token_prefixes"]).items()}
        if "rates" in plan:
            rates = {_kind(k, allowed=RATE_KINDS): float(v) for k, v in dict(plan["rates"]).items()}
            if any(v < 0 for v in rates.values()) or sum(rates.values()) > 1:
                raise FaultPlanError("rates must be non-negative fractions that sum to at most 1")
            staged.rates = rates
        if "seed" in plan:
            staged.seed = int(plan["seed"])
        if "quota" in plan:
            staged._set_quota(plan["quota"] or {})
        for flag in ("auth_failure", "token_failure"):
            if flag in plan:
                setattr(staged, flag, bool(plan[flag]))
        if "latency_ms" in plan:
            staged.latency_ms = max(0.0, float(plan["latency_ms"]))
        self.__dict__.update(staged.__dict__)

    def _set_quota(self, quota: dict[str, Any]) -> None:
        self.quota_requests = int(quota.get("requests", 0))
        seconds = float(quota.get("seconds", 0))
        self.quota_until = time.monotonic() + seconds if seconds > 0 else 0.0
        retry_after = quota.get("retry_after", 60)
        self.retry_after = None if retry_after is None else int(retry_after)
        self.retry_after_format = str(quota.get("retry_after_format", "seconds"))
        if self.retry_after_format not in {"seconds", "date"}:
            raise FaultPlanError("retry_after_format must be 'seconds' or 'date'")

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": {token: fault.to_json() for token, fault in self.tokens.items()},
            "token_prefixes": dict(self.token_prefixes),
            "rates": dict(self.rates),
            "seed": self.seed,
            "quota": {
                "requests": self.quota_requests,
                "seconds_left": max(0.0, self.quota_until - time.monotonic()) if self.quota_until else 0.0,
                "retry_after": self.retry_after,
                "retry_after_format": self.retry_after_format,
            },
            "auth_failure": self.auth_failure,
            "token_failure": self.token_failure,
            "latency_ms": self.latency_ms,
        }

    def quota_fault(self) -> bool:
        """Whether this send request gets 429 (consumes one of the next-N requests)."""
        if self.quota_requests > 0:
            self.quota_requests -= 1
            return True
        return bool(self.quota_until) and time.monotonic() < self.quota_until

    def token_fault(self, token: str, attempt: int) -> str | None:
        """The per-token fault for the ``attempt``-th request (0-based) for ``token``."""
        fault = self.tokens.get(token)
        if fault is not None:
            return fault.kind if fault.times is None or attempt < fault.times else None
        for prefix, kind in self.token_prefixes.items():
            if token.startswith(prefix):
                return kind
        return None

    def rate_fault(self, token: str, attempt: int) -> str | None:
        """A rate-based fault for this (token, attempt), deterministic in the seed."""
        if not self.rates:
            return None
        digest = hashlib.blake2b(f"{self.seed}:{token}:{attempt}".encode(), digest_size=8).digest()
        draw = int.from_bytes(digest, "big") / 2**64
        threshold = 0.0
        for kind in sorted(self.rates):
            threshold += self.rates[kind]
            if draw < threshold:
                return kind
        return None
