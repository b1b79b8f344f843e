"""What the stub knows and how it answers: ``messages:send``, the OAuth token endpoint, control.

``StubState.handle`` turns one parsed HTTP request into a ``Reply``; ``server.py``
does the HTTP. Everything runs on the server's event-loop thread, so nothing here
needs a lock.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from delivery.fcm_stub.faults import (
    DROP,
    ErrorReply,
    FaultPlan,
    FaultPlanError,
    error_reply,
    fault_reply,
    unauthenticated_reply,
)
from delivery.fcm_stub.validation import validate_send_body

SEND_PATH_RE = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"  # noqa: S105 - a URL path
ACCESS_TOKEN_SECONDS = 3600
LOG_PAGE = 10_000


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded on the way out
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def from_error(cls, error: ErrorReply, *, delay: float = 0.0) -> Reply:
        return cls(error.status, error.body, error.headers, delay)


class StubState:
    """What the stub knows: issued tokens, the fault plan, the log, request records, counters."""

    def __init__(self, *, project: str | None, log_path: Path | None, keep_log: bool) -> None:
        self.project = project
        self.keep_log = keep_log
        self.log_file: IO[str] | None = log_path.open("a", encoding="utf-8") if log_path else None
        self.boot = secrets.token_hex(3)
        self.access_tokens: set[str] = set()
        self.plan = FaultPlan()
        self.reset()

    def reset(self, *, log: bool = True, faults: bool = True) -> None:
        if faults:
            self.plan = FaultPlan()
        if log:
            # (time, name, project, raw request body): parsed only when asked for, because
            # a parsed message costs ~6 KB of Python objects and a run logs 10^5..10^6 of them.
            self.log: list[tuple[float, str, str, bytes]] = []
            self.records: list[tuple[float, str, int, str]] = []  # (time, token, status, code)
            self.attempts: Counter[str] = Counter()
            self.accepted: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.errors: Counter[str] = Counter()
            self.token_requests = 0
            self.validated = 0
            self.ids = itertools.count(1)

    # --- dispatch -----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(target)
        match = SEND_PATH_RE.match(url.path)
        if match:
            if method != "POST":
                return Reply(405, {"error": "use POST"})
            return self.send(match.group(1), headers, body)
        if url.path == TOKEN_PATH and method == "POST":
            return self.token(body)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        routes = {
            ("GET", "/__log"): lambda: self.get_log(query),
            ("GET", "/__requests"): lambda: self.get_requests(query),
            ("GET", "/__stats"): lambda: Reply(body=self.stats()),
            ("GET", "/__faults"): lambda: Reply(body=self.plan.to_json()),
            ("POST", "/__control"): lambda: self.control(body),
            ("POST", "/__reset"): lambda: self.control_reset(body),
            ("GET", "/"): lambda: Reply(body={"service": "NotifyHub FCM stub", "project": self.project}),
        }
        route = routes.get((method, url.path))
        if route is None:
            return Reply.from_error(error_reply(404, "NOT_FOUND", f"No route for {method} {url.path}"))
        return route()

    # --- OAuth 2.0 token endpoint (service-account JWT bearer grant) ----------------

    def token(self, body: bytes) -> Reply:
        """https://developers.google.com/identity/protocols/oauth2/service-account#httprest"""
        self.token_requests += 1
        form = {key: values[-1] for key, values in parse_qs(body.decode("latin-1")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
        claims = _jwt_claims(form.get("assertion", ""))
        if claims is None or not claims.get("iss") or not claims.get("scope"):
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT assertion."})
        if self.plan.token_failure:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        access_token = f"ya29.stub-{secrets.token_urlsafe(24)}"
        self.access_tokens.add(access_token)
        return Reply(
            body={"access_token": access_token, "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "Bearer"}
        )

    # --- messages:send ----------------------------------------------------------------

    def send(self, project: str, headers: dict[str, str], raw: bytes) -> Reply:
        now = time.time()
        plan = self.plan
        delay = plan.latency_ms / 1000
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        message = message if isinstance(message, dict) else {}
        target = message.get("token") or message.get("topic") or message.get("condition") or ""
        target = target if isinstance(target, str) else ""
        attempt = self.attempts[target]
        self.attempts[target] += 1
        rate = plan.rate_fault(target, attempt)
        fault = plan.token_fault(target, attempt)
        if DROP in (rate, fault):
            self._record(now, target, 0, DROP)
            return Reply(drop=True, delay=delay)
        error = self._refusal(project, headers, body)
        if error is None and fault is not None:
            error = fault_reply(fault, retry_after=self._retry_after())
        if error is None and rate is not None:
            error = fault_reply(rate)
        if error is not None:
            self._record(now, target, error.status, error.code)
            return Reply.from_error(error, delay=delay)
        return Reply(body={"name": self._accept(project, body, raw, now)}, delay=delay)

    def _refusal(self, project: str, headers: dict[str, str], body: Any) -> ErrorReply | None:
        """Why FCM would refuse the request before looking at its token, if it would."""
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if self.plan.auth_failure or scheme.lower() != "bearer" or credential not in self.access_tokens:
            return unauthenticated_reply()
        if self.project is not None and project != self.project:
            return error_reply(
                403, "PERMISSION_DENIED", f"Permission 'cloudmessaging.messages.create' denied on {project}."
            )
        if self.plan.quota_fault():
            return fault_reply("QUOTA_EXCEEDED", retry_after=self._retry_after())
        if body is None:
            return error_reply(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        violation = validate_send_body(body)
        if violation is not None:
            return error_reply(
                400,
                "INVALID_ARGUMENT",
                violation.description,
                field_violation=(violation.field, violation.description),
            )
        return None

    def _retry_after(self) -> str | None:
        seconds = self.plan.retry_after
        if seconds is None:
            return None
        if self.plan.retry_after_format == "date":
            return email.utils.formatdate(time.time() + seconds, usegmt=True)
        return str(seconds)

    def _accept(self, project: str, body: dict[str, Any], raw: bytes, now: float) -> str:
        message = body["message"]
        validate_only = bool(body.get("validate_only"))
        if validate_only:
            self.validated += 1
            name = f"projects/{project}/messages/fake_message_id"
        else:
            name = f"projects/{project}/messages/0:{next(self.ids)}%{self.boot}"
        token = message.get("token") or message.get("topic") or message.get("condition") or ""
        self._record(now, token, 200, "OK")
        if validate_only:
            return name
        self.accepted[token] += 1
        if self.keep_log:
            self.log.append((now, name, project, raw))
        if self.log_file is not None:
            entry = {"t": now, "name": name, "project": project, "message": message}
            self.log_file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        return name

    def _record(self, now: float, token: str, status: int, code: str) -> None:
        self.records.append((now, token, status, code))
        self.statuses[status] += 1
        if status != 200:
            self.errors[code] += 1

    # --- control API ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        accepted = sum(self.accepted.values())
        return {
            "requests": len(self.records),
            "accepted": accepted,
            "distinct_tokens": len(self.accepted),
            "duplicates": accepted - len(self.accepted),
            "validate_only": self.validated,
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "dropped": self.errors.get(DROP, 0),
            "token_requests": self.token_requests,
            "log_size": len(self.log),
        }

    def get_log(self, query: dict[str, str]) -> Reply:
        since, limit = int(query.get("since", 0)), min(int(query.get("limit", LOG_PAGE)), LOG_PAGE)
        if self.log_file is not None:
            self.log_file.flush()
        entries = [
            {"seq": seq, "t": t, "name": name, "project": project, "message": json.loads(raw)["message"]}
            for seq, (t, name, project, raw) in enumerate(self.log[since : since + limit], start=since)
        ]
        return Reply(body={"entries": entries, "next": since + len(entries), "total": len(self.log)})

    def get_requests(self, query: dict[str, str]) -> Reply:
        since, limit = int(query.get("since", 0)), min(int(query.get("limit", LOG_PAGE)), LOG_PAGE)
        page = self.records[since : since + limit]
        return Reply(
            body={
                "requests": [{"t": t, "token": token, "status": s, "error": c} for t, token, s, c in page],
                "next": since + len(page),
                "total": len(self.records),
            }
        )

    def control(self, body: bytes) -> Reply:
        try:
            self.plan.update(json.loads(body or b"{}"))
        except (FaultPlanError, ValueError, TypeError) as error:
            return Reply(400, {"error": str(error)})
        return Reply(body=self.plan.to_json())

    def control_reset(self, body: bytes) -> Reply:
        try:
            what = json.loads(body or b"{}")
            self.reset(log=bool(what.get("log", True)), faults=bool(what.get("faults", True)))
        except (ValueError, AttributeError) as error:
            return Reply(400, {"error": str(error)})
        return Reply(body=self.stats())

    def flush(self) -> None:
        if self.log_file is not None:
            self.log_file.flush()

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The claims of a JWT (signature not checked: the stub trusts its loopback callers)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None
