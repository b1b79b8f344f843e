"""The loopback FCM stub itself: OAuth, request validation, faults, the control API, the CLI."""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from delivery.fcm_stub import FaultPlan, FaultPlanError, FcmStubServer
from delivery.fcm_stub.cli import plan_from_options
from delivery.fcm_stub.faults import FCM_ERROR_TYPE
from delivery.fcm_stub.validation import validate_send_body
from tests.fcm import (  # noqa: F401 - fixtures
    FcmStubHandle,
    fcm_stub_fixture,
    fcm_stub_process,
    fcm_stub_server_fixture,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SEND = "/v1/projects/notifyhub-stub/messages:send"


def _assertion(**claims: Any) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    payload = {"iss": "sa@example.iam.gserviceaccount.com", "scope": "https://www.googleapis.com/auth/x"}
    return f"{part({'alg': 'RS256'})}.{part({**payload, **claims})}.c2ln"


def _token(stub: FcmStubHandle) -> str:
    response = requests.post(
        stub.token_uri, data={"grant_type": JWT_BEARER, "assertion": _assertion()}, timeout=10
    )
    assert response.status_code == 200
    access_token: str = response.json()["access_token"]
    return access_token


def _send(stub: FcmStubHandle, body: Any, *, token: str | None = None, path: str = SEND) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or _token(stub)}", "Content-Type": "application/json"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(stub.url + path, data=raw, headers=headers, timeout=10)


def _message(token: str = "tok-1", **fields: Any) -> dict[str, Any]:
    return {"message": {"token": token, "notification": {"title": "Hi", "body": "There"}, **fields}}


# --- OAuth token endpoint ---------------------------------------------------------------


def test_the_token_endpoint_grants_a_bearer_token(fcm_stub: FcmStubHandle) -> None:
    response = requests.post(
        fcm_stub.token_uri, data={"grant_type": JWT_BEARER, "assertion": _assertion()}, timeout=10
    )

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert (body["expires_in"], body["token_type"]) == (3600, "Bearer")
    assert fcm_stub.stats()["token_requests"] == 1


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "assertion": "x"}, "unsupported_grant_type"),
        ({"grant_type": JWT_BEARER, "assertion": "not-a-jwt"}, "invalid_grant"),
        ({"grant_type": JWT_BEARER}, "invalid_grant"),
    ],
)
def test_the_token_endpoint_refuses_bad_grants(
    fcm_stub: FcmStubHandle, form: dict[str, str], error: str
) -> None:
    response = requests.post(fcm_stub.token_uri, data=form, timeout=10)

    assert (response.status_code, response.json()["error"]) == (400, error)


def test_token_failure_refuses_every_grant(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(token_failure=True)

    response = requests.post(
        fcm_stub.token_uri, data={"grant_type": JWT_BEARER, "assertion": _assertion()}, timeout=10
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


# --- messages:send ----------------------------------------------------------------------


def test_a_valid_message_is_accepted_and_logged(fcm_stub: FcmStubHandle) -> None:
    body = _message(data={"k": "v"}, android={"ttl": "3600s", "priority": "HIGH", "collapse_key": "nh-1"})

    response = _send(fcm_stub, body)

    name = response.json()["name"]
    assert response.status_code == 200
    assert name.startswith("projects/notifyhub-stub/messages/0:")
    (entry,) = fcm_stub.log()
    assert (entry["seq"], entry["name"], entry["project"]) == (0, name, "notifyhub-stub")
    assert entry["message"] == body["message"]
    assert fcm_stub.stats()["accepted"] == 1


def test_validate_only_is_answered_but_not_delivered(fcm_stub: FcmStubHandle) -> None:
    response = _send(fcm_stub, {**_message(), "validate_only": True})

    assert response.json() == {"name": "projects/notifyhub-stub/messages/fake_message_id"}
    assert fcm_stub.log() == []
    assert fcm_stub.stats()["validate_only"] == 1


@pytest.mark.parametrize("authorization", ["", "Bearer not-issued", "Basic abc"])
def test_sends_need_a_token_the_stub_issued(fcm_stub: FcmStubHandle, authorization: str) -> None:
    response = requests.post(
        fcm_stub.url + SEND, json=_message(), headers={"Authorization": authorization}, timeout=10
    )

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert fcm_stub.log() == []


def test_a_stub_bound_to_a_project_refuses_others(tmp_path: Path) -> None:
    with FcmStubServer(project="mine") as server:
        handle = FcmStubHandle(url=server.url, credentials_path=tmp_path / "unused.json")
        token = _token(handle)
        assert _send(handle, _message(), token=token, path="/v1/projects/mine/messages:send").ok
        refused = _send(handle, _message(), token=token, path="/v1/projects/other/messages:send")

    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"


INVALID_BODIES = [
    ({"nothing": 1}, "message", "'message' is required"),
    ({"message": {"notification": {"title": "x"}}}, "message", "Recipient of the message is not set."),
    ({"message": {"token": "a", "topic": "b"}}, "message", "oneof field 'target' is already set"),
    ({"message": {"token": " "}}, "message.token", "not a valid FCM registration token"),
    ({"message": {"token": "a", "data": {"a": "1", "n": 2}}}, "message.data[1].value", "(TYPE_STRING), 2"),
    ({"message": {"token": "a", "data": {"from": "x"}}}, "message.data", "Invalid data payload key: from"),
    ({"message": {"token": "a", "notification": {"title": 5}}}, "message.notification.title", "TYPE_STRING"),
    ({"message": {"token": "a", "color": "red"}}, "message", "Unknown name \"color\" at 'message'"),
    ({"message": {"token": "a", "android": {"ttl": "1h"}}}, "message.android.ttl", "protobuf.Duration"),
    ({"message": {"token": "a", "android": {"priority": "urgent"}}}, "message.android.priority", "urgent"),
    (
        {"message": {"token": "a", "android": {"notification": {"sticky": "yes"}}}},
        "message.android.notification.sticky",
        "TYPE_BOOL",
    ),
    (
        {"message": {"token": "a", "apns": {"headers": {"apns-priority": 10}}}},
        "message.apns.headers[0].value",
        "",
    ),
    (
        {"message": {"token": "a", "apns": {"headers": {"apns-priority": "7"}}}},
        "message.apns.headers.apns-priority",
        "Invalid APNs priority",
    ),
    (
        {"message": {"token": "a", "apns": {"payload": {"aps": {"badge": "3"}}}}},
        "message.apns.payload.aps.badge",
        "badge",
    ),
    (
        {"message": {"token": "a", "webpush": {"headers": {"Urgency": "asap"}}}},
        "message.webpush.headers.Urgency",
        "Urgency",
    ),
    (
        {"message": {"token": "a", "webpush": {"fcm_options": {"link": "http://x.example"}}}},
        "message.webpush.fcm_options.link",
        "HTTPS",
    ),
    (
        {"message": {"token": "a", "fcm_options": {"analytics_label": "has spaces"}}},
        "message.fcm_options.analytics_label",
        "analytics_label",
    ),
    ({"message": {"token": "a", "data": {"blob": "x" * 5000}}}, "message", "Message is too big"),
    ({"message": {"token": "a"}, "validate_only": "yes"}, "validate_only", "TYPE_BOOL"),
]


@pytest.mark.parametrize(("body", "field", "text"), INVALID_BODIES)
def test_malformed_messages_get_fcm_400s_naming_the_field(
    fcm_stub: FcmStubHandle, body: dict[str, Any], field: str, text: str
) -> None:
    response = _send(fcm_stub, body)

    error = response.json()["error"]
    assert response.status_code == 400
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert text in error["message"]
    (violations,) = [d["fieldViolations"] for d in error["details"] if "fieldViolations" in d]
    assert violations[0]["field"] == field
    assert fcm_stub.log() == []


@pytest.mark.parametrize(("body", "field", "_text"), INVALID_BODIES)
def test_validation_agrees_with_itself_offline(body: dict[str, Any], field: str, _text: str) -> None:
    violation = validate_send_body(body)
    assert violation is not None and violation.field == field


def test_everything_the_admin_sdk_can_encode_is_valid() -> None:
    body = {
        "message": {
            "token": "t",
            "notification": {"title": "a", "body": "b", "image": "https://x.example/i.png"},
            "data": {"k": "v"},
            "android": {
                "collapse_key": "c",
                "priority": "high",
                "ttl": "3600.5s",
                "restricted_package_name": "com.example",
                "data": {"k": "v"},
                "notification": {
                    "title": "a", "channel_id": "c", "tag": "t", "sticky": True, "vibrate_timings": ["0.5s"],
                    "notification_count": 3, "light_settings": {"color": {}}, "body_loc_args": ["x"],
                },
                "fcm_options": {"analytics_label": "l"},
                "direct_boot_ok": True,
            },
            "apns": {
                "headers": {"apns-priority": "10", "apns-expiration": "0", "apns-collapse-id": "c"},
                "payload": {"aps": {"sound": {"name": "s", "critical": 1}, "badge": 1}, "custom": [1]},
                "fcm_options": {"analytics_label": "l", "image": "https://x.example/i.png"},
            },
            "webpush": {
                "headers": {"TTL": "60", "Urgency": "very-low", "Topic": "nh-1"},
                "notification": {"actions": [{"action": "a", "title": "A"}], "custom": {"x": 1}},
                "fcm_options": {"link": "https://x.example"},
            },
            "fcm_options": {"analytics_label": "campaign-1"},
        }
    }  # fmt: skip
    assert validate_send_body(body) is None
    assert validate_send_body({"message": {"topic": "news"}}) is None
    assert validate_send_body({"message": {"condition": "'a' in topics"}}) is None


def test_invalid_json_is_a_400(fcm_stub: FcmStubHandle) -> None:
    response = _send(fcm_stub, b"{not json")

    assert (response.status_code, response.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "rpc_status", "fcm_code"),
    [
        ("UNREGISTERED", 404, "NOT_FOUND", "UNREGISTERED"),
        ("SENDER_ID_MISMATCH", 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        ("INVALID_TOKEN", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        ("INVALID_PAYLOAD", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        ("QUOTA_EXCEEDED", 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
        ("UNAVAILABLE", 503, "UNAVAILABLE", "UNAVAILABLE"),
        ("INTERNAL", 500, "INTERNAL", "INTERNAL"),
        ("THIRD_PARTY_AUTH_ERROR", 401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
    ],
)
def test_token_faults_answer_in_fcm_error_format(
    fcm_stub: FcmStubHandle, kind: str, status: int, rpc_status: str, fcm_code: str
) -> None:
    fcm_stub.set_faults(tokens={"bad": kind})

    response = _send(fcm_stub, _message("bad"))
    assert _send(fcm_stub, _message("good")).ok

    error = response.json()["error"]
    assert response.status_code == status
    assert (error["code"], error["status"]) == (status, rpc_status)
    assert {"@type": FCM_ERROR_TYPE, "errorCode": fcm_code} in error["details"]
    assert [entry["message"]["token"] for entry in fcm_stub.log()] == ["good"]
    assert [(r["token"], r["status"], r["error"]) for r in fcm_stub.requests()] == [
        ("bad", status, fcm_code),
        ("good", 200, "OK"),
    ]


def test_an_invalid_token_fault_names_the_token_and_a_payload_fault_the_field(
    fcm_stub: FcmStubHandle,
) -> None:
    fcm_stub.set_faults(tokens={"t1": "INVALID_TOKEN", "t2": "INVALID_PAYLOAD"})

    token_error = _send(fcm_stub, _message("t1")).json()["error"]
    payload_error = _send(fcm_stub, _message("t2")).json()["error"]

    assert "registration token" in token_error["message"]
    assert "registration token" not in payload_error["message"]
    assert any("fieldViolations" in detail for detail in payload_error["details"])


def test_a_token_fault_can_be_limited_to_the_first_attempts(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(tokens={"flaky": {"error": "UNAVAILABLE", "times": 2}})

    statuses = [_send(fcm_stub, _message("flaky")).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_prefix_faults(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(token_prefixes={"dead-": "UNREGISTERED"})

    assert _send(fcm_stub, _message("dead-1")).status_code == 404
    assert _send(fcm_stub, _message("alive-1")).status_code == 200


def test_rate_faults_are_deterministic_per_seed(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)

    def run() -> list[int]:
        return [_send(fcm_stub, _message(f"t{n}"), token=token).status_code for n in range(200)]

    fcm_stub.set_faults(rates={"UNAVAILABLE": 0.3, "INTERNAL": 0.1}, seed=7)
    first = run()
    fcm_stub.reset(faults=False)
    second = run()
    fcm_stub.reset(log=False)
    fcm_stub.set_faults(rates={"UNAVAILABLE": 0.3, "INTERNAL": 0.1}, seed=8)
    third = run()

    assert first == second != third
    assert 30 <= first.count(503) <= 90 and 5 <= first.count(500) <= 40
    assert set(first) == {200, 500, 503}


def test_quota_for_the_next_requests_with_retry_after(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(quota={"requests": 2, "retry_after": 9})

    responses = [_send(fcm_stub, _message(f"t{n}"), token=token) for n in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["Retry-After"] == "9"
    assert fcm_stub.faults()["quota"]["requests"] == 0


def test_quota_for_a_time_window_without_retry_after(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(quota={"seconds": 300, "retry_after": None})

    responses = [_send(fcm_stub, _message(f"t{n}"), token=token) for n in range(3)]

    assert [r.status_code for r in responses] == [429] * 3
    assert "Retry-After" not in responses[0].headers
    fcm_stub.set_faults(quota={})
    assert _send(fcm_stub, _message(), token=token).ok


def test_quota_retry_after_as_an_http_date(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(quota={"requests": 1, "retry_after": 120, "retry_after_format": "date"})

    response = _send(fcm_stub, _message())

    when = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert time.time() + 100 < when < time.time() + 130


def test_request_records_keep_arrival_times(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(quota={"requests": 1, "retry_after": 5})
    before = time.time()
    _send(fcm_stub, _message("a"), token=token)
    _send(fcm_stub, _message("a"), token=token)

    first, second = fcm_stub.requests()
    assert (first["status"], first["error"], second["status"]) == (429, "QUOTA_EXCEEDED", 200)
    assert before <= first["t"] <= second["t"] <= time.time()


def test_auth_failure_answers_401_to_valid_tokens(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(auth_failure=True)

    response = _send(fcm_stub, _message(), token=token)

    assert (response.status_code, response.json()["error"]["status"]) == (401, "UNAUTHENTICATED")


def test_dropped_connections_get_no_answer(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(tokens={"drop": "DROP"})
    host, port = _host_port(fcm_stub)
    connection = http.client.HTTPConnection(host, port, timeout=10)

    connection.request("POST", SEND, json.dumps(_message("drop")), {"Authorization": f"Bearer {token}"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()

    assert fcm_stub.stats()["dropped"] == 1
    assert fcm_stub.requests()[0]["status"] == 0


def test_keep_alive_pipelining_and_latency_keep_replies_in_order(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(latency_ms=20)
    host, port = _host_port(fcm_stub)
    requests_bytes = b"".join(
        (
            f"POST {SEND} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in (json.dumps(_message(f"p{n}")).encode() for n in range(3))
    )
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(requests_bytes)  # three requests in one write
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 3 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "the stub closed a keep-alive connection"
            received += chunk

    names = [json.loads(part.split(b"\r\n\r\n", 1)[1])["name"] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert names == [entry["name"] for entry in fcm_stub.log()]
    assert [entry["message"]["token"] for entry in fcm_stub.log()] == ["p0", "p1", "p2"]


def test_unknown_routes_and_chunked_bodies(fcm_stub: FcmStubHandle) -> None:
    assert requests.get(fcm_stub.url + "/nope", timeout=10).status_code == 404
    chunked = requests.post(fcm_stub.url + SEND, data=iter([b"{}"]), timeout=10)
    assert chunked.status_code == 411


# --- control API ----------------------------------------------------------------------------


def test_control_replaces_only_the_keys_it_names(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(tokens={"a": "UNREGISTERED"}, latency_ms=5)
    plan = fcm_stub.set_faults(rates={"INTERNAL": 0.5})

    assert plan["tokens"] == {"a": {"error": "UNREGISTERED", "times": None}}
    assert (plan["latency_ms"], plan["rates"]) == (5, {"INTERNAL": 0.5})
    assert fcm_stub.faults() == plan


@pytest.mark.parametrize(
    "plan",
    [
        {"tokens": {"a": "EXPLODE"}},
        {"rates": {"UNREGISTERED": 0.1}},
        {"rates": {"UNAVAILABLE": 0.7, "INTERNAL": 0.5}},
        {"quota": {"requests": 1, "retry_after_format": "weeks"}},
        {"surprise": True},
        {"tokens": {"a": {"error": "INTERNAL", "times": -1}}},
    ],
)
def test_control_refuses_bad_plans_and_changes_nothing(fcm_stub: FcmStubHandle, plan: dict[str, Any]) -> None:
    fcm_stub.set_faults(tokens={"keep": "INTERNAL"})

    with pytest.raises(ValueError, match="refused"):
        fcm_stub.set_faults(plan)

    assert fcm_stub.faults()["tokens"] == {"keep": {"error": "INTERNAL", "times": None}}


def test_reset_clears_the_log_and_or_the_faults(fcm_stub: FcmStubHandle) -> None:
    fcm_stub.set_faults(tokens={"bad": "UNREGISTERED"})
    _send(fcm_stub, _message("ok"))

    fcm_stub.reset(log=False)
    assert len(fcm_stub.log()) == 1 and fcm_stub.faults()["tokens"] == {}
    fcm_stub.set_faults(tokens={"bad": "UNREGISTERED"})
    fcm_stub.reset(faults=False)
    assert fcm_stub.log() == [] and fcm_stub.stats()["requests"] == 0
    assert fcm_stub.faults()["tokens"] != {}


def test_stats_count_duplicates_and_errors(fcm_stub: FcmStubHandle) -> None:
    token = _token(fcm_stub)
    fcm_stub.set_faults(tokens={"dead": "UNREGISTERED"})
    for target in ("a", "a", "b", "dead"):
        _send(fcm_stub, _message(target), token=token)

    stats = fcm_stub.stats()
    assert (stats["requests"], stats["accepted"], stats["distinct_tokens"], stats["duplicates"]) == (
        4,
        3,
        2,
        1,
    )
    assert stats["statuses"] == {"200": 3, "404": 1}
    assert stats["errors"] == {"UNREGISTERED": 1}


def test_the_log_pages_through_many_entries(fcm_stub: FcmStubHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("delivery.fcm_stub.state.LOG_PAGE", 3)
    token = _token(fcm_stub)
    for n in range(7):
        _send(fcm_stub, _message(f"t{n}"), token=token)

    assert [entry["seq"] for entry in fcm_stub.log()] == list(range(7))
    assert len(fcm_stub.requests()) == 7


def test_the_jsonl_log_file_gets_every_accepted_message(tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    with FcmStubServer(log_path=log, keep_log=False) as server:
        handle = FcmStubHandle(url=server.url, credentials_path=tmp_path / "unused.json")
        token = _token(handle)
        handle.set_faults(tokens={"dead": "UNREGISTERED"})
        for target in ("a", "dead", "b"):
            _send(handle, _message(target), token=token)
        assert handle.log() == []  # not kept in memory

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["message"]["token"] for line in lines] == ["a", "b"]
    assert all(line["name"].startswith("projects/notifyhub-stub/messages/") for line in lines)


# --- command line -----------------------------------------------------------------------


def _options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "faults": None, "token_fault": [], "prefix_fault": [], "rate": [], "seed": 0, "quota_requests": 0,
        "quota_seconds": 0.0, "retry_after": "60", "auth_failure": False, "token_failure": False,
        "latency_ms": 0.0,
    }  # fmt: skip
    options.update(overrides)
    return options


def test_cli_flags_make_a_fault_plan() -> None:
    plan = plan_from_options(
        _options(
            token_fault=["dead=UNREGISTERED", "a=b=INTERNAL"],
            prefix_fault=["x-=SENDER_ID_MISMATCH"],
            rate=["UNAVAILABLE=0.3"],
            seed=4,
            quota_requests=5,
            retry_after="none",
            latency_ms=10.0,
        )
    )
    assert plan == {
        "tokens": {"dead": "UNREGISTERED", "a=b": "INTERNAL"},
        "token_prefixes": {"x-": "SENDER_ID_MISMATCH"},
        "rates": {"UNAVAILABLE": "0.3"},
        "seed": 4,
        "quota": {"requests": 5, "seconds": 0.0, "retry_after": None},
        "latency_ms": 10.0,
    }
    FaultPlan().update(plan)  # and it is a valid plan


def test_cli_refuses_malformed_pairs() -> None:
    with pytest.raises(FaultPlanError, match="KEY=VALUE"):
        plan_from_options(_options(token_fault=["UNREGISTERED"]))


def test_the_stub_runs_as_its_own_process(tmp_path: Path) -> None:
    with fcm_stub_process(tmp_path, "--token-fault", "dead=UNREGISTERED") as stub:
        info = json.loads(stub.credentials_path.read_text())
        assert info["token_uri"] == stub.token_uri
        assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
        assert stub.credentials_path.stat().st_mode & 0o777 == 0o600
        assert _send(stub, _message("dead")).status_code == 404
        assert _send(stub, _message("ok")).ok
        assert stub.stats()["accepted"] == 1


def _host_port(stub: FcmStubHandle) -> tuple[str, int]:
    url = urlsplit(stub.url)
    assert url.hostname and url.port
    return url.hostname, url.port
