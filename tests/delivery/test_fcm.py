"""The fcm backend, through the real firebase-admin SDK against the loopback FCM stub."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from delivery.backends import MAX_BATCH, PushBackendUnavailable, PushMessage, SendResult, get_backend
from delivery.fcm import FcmBackend, _registry
from delivery.fcm_stub import write_service_account
from tests.fcm import (  # noqa: F401 - fixtures
    FcmStubHandle,
    fcm_settings_fixture,
    fcm_stub_fixture,
    fcm_stub_server_fixture,
)


def _message(token: str = "tok-1", **overrides: Any) -> PushMessage:
    values: dict[str, Any] = {
        "delivery_id": 1001,
        "token": token,
        "platform": "android",
        "title": "Hi Ada",
        "body": "Sale in Berlin",
        "data": {"nh_delivery_id": "1001", "sku": "123"},
        "collapse_key": "nh-9",
        "analytics_label": "campaign-42",
        "ttl_seconds": 3600,
        "priority": "high",
    }
    values.update(overrides)
    return PushMessage(**values)


def _send(*messages: PushMessage) -> list[SendResult]:
    return FcmBackend().send(list(messages))


def _requests_for(stub: FcmStubHandle, token: str) -> list[dict[str, Any]]:
    return [request for request in stub.requests() if request["token"] == token]


def test_success_returns_the_fcm_message_names(fcm_settings: FcmStubHandle) -> None:
    results = _send(_message("tok-1"), _message("tok-2"), _message("tok-3"))

    log = fcm_settings.log()
    assert [result.outcome for result in results] == ["sent"] * 3
    # send_each sends concurrently: match ids to the log by token, not by order.
    names = {entry["message"]["token"]: entry["name"] for entry in log}
    assert [result.message_id for result in results] == [names["tok-1"], names["tok-2"], names["tok-3"]]
    assert all(r.message_id.startswith("projects/notifyhub-stub/messages/") for r in results)
    assert len(set(names.values())) == 3
    assert fcm_settings.stats()["requests"] == 3


def test_the_stub_logs_every_platform_option(fcm_settings: FcmStubHandle) -> None:
    message = _message(
        image_url="https://cdn.example.com/sale.png",
        click_url="https://shop.example.com/sale?u=1",
        android={"channel_id": "offers", "icon": "ic_sale"},
        apns={"sound": "default", "badge": 3},
        webpush={"icon": "https://cdn.example.com/icon.png", "actions": [{"action": "buy", "title": "Buy"}]},
    )
    before = int(time.time())
    assert _send(message)[0].ok
    after = int(time.time())

    (body,) = fcm_settings.messages()
    expiration = int(body["apns"]["headers"].pop("apns-expiration"))
    assert before + 3600 <= expiration <= after + 3600
    assert body == {
        "token": "tok-1",
        "notification": {
            "title": "Hi Ada",
            "body": "Sale in Berlin",
            "image": "https://cdn.example.com/sale.png",
        },
        "data": {"nh_delivery_id": "1001", "sku": "123"},
        "android": {
            "collapse_key": "nh-9",
            "priority": "high",
            "ttl": "3600s",
            "notification": {"channel_id": "offers", "icon": "ic_sale", "tag": "nh-9"},
        },
        "apns": {
            "headers": {"apns-priority": "10", "apns-collapse-id": "nh-9"},
            "payload": {"aps": {"sound": "default", "badge": 3, "mutable-content": 1}},
            "fcm_options": {"image": "https://cdn.example.com/sale.png"},
        },
        "webpush": {
            "headers": {"TTL": "3600", "Urgency": "high", "Topic": "nh-9"},
            "notification": {
                "icon": "https://cdn.example.com/icon.png",
                "actions": [{"action": "buy", "title": "Buy"}],
                "tag": "nh-9",
            },
            "fcm_options": {"link": "https://shop.example.com/sale?u=1"},
        },
        "fcm_options": {"analytics_label": "campaign-42"},
    }


def test_normal_priority_zero_ttl_and_plain_http_link(fcm_settings: FcmStubHandle) -> None:
    message = _message(priority="normal", ttl_seconds=0, click_url="http://shop.example.com/", data={})
    assert _send(message)[0].ok

    (body,) = fcm_settings.messages()
    assert body["android"]["priority"] == "normal"
    assert body["android"]["ttl"] == "0s"
    assert body["apns"]["headers"] == {
        "apns-priority": "5",
        "apns-expiration": "0",
        "apns-collapse-id": "nh-9",
    }
    assert body["webpush"]["headers"] == {"TTL": "0", "Urgency": "normal", "Topic": "nh-9"}
    assert "fcm_options" not in body["webpush"]  # FCM takes only HTTPS links
    assert "data" not in body


@pytest.mark.parametrize(
    ("fault", "outcome", "error_code"),
    [
        ("UNREGISTERED", "token_invalid", "UNREGISTERED"),
        ("SENDER_ID_MISMATCH", "token_invalid", "SENDER_ID_MISMATCH"),
        ("INVALID_TOKEN", "token_invalid", "INVALID_ARGUMENT"),
        ("INVALID_PAYLOAD", "fatal", "INVALID_ARGUMENT"),
        ("UNAVAILABLE", "retry", "UNAVAILABLE"),
        ("INTERNAL", "retry", "INTERNAL"),
        ("DROP", "retry", "TRANSPORT"),
        ("THIRD_PARTY_AUTH_ERROR", "fatal", "AUTH"),
    ],
)
def test_each_fcm_error_maps_to_one_outcome(
    fcm_settings: FcmStubHandle, fault: str, outcome: str, error_code: str
) -> None:
    fcm_settings.set_faults(tokens={"bad": fault})

    good, bad = _send(_message("good"), _message("bad"))

    assert good.outcome == "sent"
    assert (bad.ok, bad.outcome, bad.error_code) == (False, outcome, error_code)
    assert bad.token_invalid is (outcome == "token_invalid")
    assert bad.retryable is (outcome == "retry")
    assert bad.fatal is (outcome == "fatal")
    assert bad.error
    if fault != "THIRD_PARTY_AUTH_ERROR":  # a 401 makes google-auth refresh the token and try again
        # The SDK's own retries are off: one request per message, whatever the answer.
        assert len(_requests_for(fcm_settings, "bad")) == 1
    assert [entry["message"]["token"] for entry in fcm_settings.log()] == ["good"]


def test_a_payload_error_from_fcm_validation_is_fatal_not_a_dead_token(fcm_settings: FcmStubHandle) -> None:
    (result,) = _send(_message(data={"blob": "x" * 5000}))

    assert (result.outcome, result.error_code, result.token_invalid) == ("fatal", "INVALID_ARGUMENT", False)
    assert "Message is too big" in result.error


def test_quota_exceeded_carries_retry_after_from_the_header(fcm_settings: FcmStubHandle) -> None:
    fcm_settings.set_faults(quota={"requests": 1, "retry_after": 7})

    (result,) = _send(_message())

    assert (result.outcome, result.error_code, result.retry_after) == ("retry", "QUOTA_EXCEEDED", 7.0)
    assert fcm_settings.stats()["requests"] == 1  # urllib3 did not sleep out the Retry-After
    assert _send(_message())[0].ok  # the quota was for one request


def test_quota_exceeded_retry_after_as_an_http_date(fcm_settings: FcmStubHandle) -> None:
    fcm_settings.set_faults(quota={"requests": 1, "retry_after": 30, "retry_after_format": "date"})

    (result,) = _send(_message())

    assert result.error_code == "QUOTA_EXCEEDED"
    assert result.retry_after is not None and 25 <= result.retry_after <= 30


def test_quota_exceeded_without_retry_after_waits_60_seconds(fcm_settings: FcmStubHandle) -> None:
    fcm_settings.set_faults(quota={"requests": 3, "retry_after": None})

    results = _send(*(_message(f"tok-{n}") for n in range(5)))

    quota = [result for result in results if result.error_code == "QUOTA_EXCEEDED"]
    assert len(quota) == 3
    assert {result.retry_after for result in quota} == {60.0}
    assert all(result.retryable and not result.fatal and not result.token_invalid for result in quota)
    assert sum(result.ok for result in results) == 2


def test_rate_faults_are_retryable_and_never_retried_by_the_sdk(fcm_settings: FcmStubHandle) -> None:
    fcm_settings.set_faults(rates={"UNAVAILABLE": 0.3, "INTERNAL": 0.2}, seed=5)

    results = _send(*(_message(f"tok-{n}") for n in range(60)))

    stats = fcm_settings.stats()
    assert stats["requests"] == 60
    failed = [result for result in results if not result.ok]
    assert len(failed) == stats["errors"]["UNAVAILABLE"] + stats["errors"]["INTERNAL"] > 0
    assert {result.error_code for result in failed} == {"UNAVAILABLE", "INTERNAL"}
    assert all(result.outcome == "retry" for result in failed)
    assert sum(result.ok for result in results) == stats["accepted"]


def test_send_failures_with_401_are_auth_errors_not_dead_tokens(fcm_settings: FcmStubHandle) -> None:
    assert _send(_message())[0].ok  # the backend holds a valid access token
    fcm_settings.set_faults(auth_failure=True)

    results = _send(_message("tok-1"), _message("tok-2"))

    assert [(r.outcome, r.error_code, r.token_invalid) for r in results] == [("fatal", "AUTH", False)] * 2
    assert "UNAUTHENTICATED" in results[0].error


def test_a_refused_token_grant_is_an_auth_error(
    fcm_settings: FcmStubHandle, settings: Any, tmp_path: Path
) -> None:
    # A new service account: the backend has no access token for it yet.
    settings.FIREBASE_CREDENTIALS = str(
        write_service_account(tmp_path / "other.json", token_uri=fcm_settings.token_uri)
    )
    fcm_settings.set_faults(token_failure=True)

    results = _send(_message("tok-1"), _message("tok-2"))

    assert [(r.outcome, r.error_code) for r in results] == [("fatal", "AUTH")] * 2
    assert "invalid_grant" in results[0].error
    assert fcm_settings.stats()["requests"] == 0


def test_fcm_down_makes_every_result_retryable(
    fcm_settings: FcmStubHandle, settings: Any, unused_port: int
) -> None:
    settings.FCM_ENDPOINT = f"http://127.0.0.1:{unused_port}"

    results = _send(_message("tok-1"), _message("tok-2"))

    assert [(r.outcome, r.error_code) for r in results] == [("retry", "TRANSPORT")] * 2


def test_a_wrong_endpoint_pauses_rather_than_killing_tokens(
    fcm_settings: FcmStubHandle, settings: Any
) -> None:
    settings.FCM_ENDPOINT = f"{fcm_settings.url}/not-fcm"  # answers 404 without UNREGISTERED

    (result,) = _send(_message())

    assert (result.outcome, result.error_code, result.token_invalid) == ("fatal", "NOT_FOUND", False)


def test_token_endpoint_down_makes_every_result_retryable(
    fcm_settings: FcmStubHandle, settings: Any, tmp_path: Path, unused_port: int
) -> None:
    down = f"http://127.0.0.1:{unused_port}"
    settings.FIREBASE_CREDENTIALS = str(
        write_service_account(tmp_path / "sa.json", token_uri=f"{down}/token")
    )
    settings.FCM_ENDPOINT = down

    results = _send(_message("tok-1"), _message("tok-2"))

    assert [(r.outcome, r.error_code) for r in results] == [("retry", "TRANSPORT")] * 2


def test_missing_credentials_are_refused_up_front(fcm_settings: FcmStubHandle, settings: Any) -> None:
    settings.FIREBASE_CREDENTIALS = "/nonexistent/service-account.json"

    with pytest.raises(PushBackendUnavailable, match=r"/nonexistent/service-account\.json"):
        get_backend()


def test_credentials_gone_after_start_are_a_config_error(
    fcm_settings: FcmStubHandle, settings: Any, tmp_path: Path
) -> None:
    backend = FcmBackend()
    (tmp_path / "broken.json").write_text("{}")
    settings.FIREBASE_CREDENTIALS = str(tmp_path / "broken.json")

    (result,) = backend.send([_message()])

    assert (result.outcome, result.error_code) == ("fatal", "CONFIG")
    assert "broken.json" in result.error


def test_a_message_the_sdk_refuses_is_reported_and_the_rest_are_sent(fcm_settings: FcmStubHandle) -> None:
    results = _send(_message("tok-1"), _message("tok-2", analytics_label="not a label!"), _message("tok-3"))

    assert [result.outcome for result in results] == ["sent", "fatal", "sent"]
    assert results[1].error_code == "INVALID_ARGUMENT"
    assert "analytics_label" in results[1].error
    assert sorted(body["token"] for body in fcm_settings.messages()) == ["tok-1", "tok-3"]


def test_batches_over_500_are_refused_and_empty_ones_send_nothing(fcm_settings: FcmStubHandle) -> None:
    with pytest.raises(ValueError, match="at most 500"):
        _send(*(_message(f"tok-{n}") for n in range(MAX_BATCH + 1)))
    assert _send() == []
    assert fcm_settings.stats()["requests"] == 0


def test_a_full_batch_goes_out_in_one_call(fcm_settings: FcmStubHandle) -> None:
    results = _send(*(_message(f"tok-{n}") for n in range(MAX_BATCH)))

    assert all(result.ok for result in results)
    assert fcm_settings.stats()["distinct_tokens"] == MAX_BATCH
    assert [r.message_id for r in results] == [e["name"] for e in sorted(fcm_settings.log(), key=_by_token)]


def _by_token(entry: dict[str, Any]) -> int:
    return int(entry["message"]["token"].removeprefix("tok-"))


def test_get_backend_gives_the_fcm_backend(fcm_settings: FcmStubHandle) -> None:
    backend = get_backend()
    assert isinstance(backend, FcmBackend)
    assert backend.send([_message()])[0].ok


def test_one_firebase_app_per_process(fcm_settings: FcmStubHandle) -> None:
    first, second = FcmBackend(), FcmBackend()
    assert first.send([_message("tok-1")])[0].ok
    assert second.send([_message("tok-2")])[0].ok
    assert first.app is second.app
    assert first.app.name.startswith(f"notifyhub-fcm-{os.getpid()}-")
    assert fcm_settings.stats()["token_requests"] <= 1  # one access token, shared

    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[int, str, bool]] = context.Queue()
    child = context.Process(target=_send_in_child, args=(first, queue))
    child.start()
    child_pid, child_app, child_ok = queue.get(timeout=60)
    child.join(60)

    assert child_ok
    assert child_app.startswith(f"notifyhub-fcm-{child_pid}-")
    assert child_app != first.app.name
    assert first.app is _registry.current().app  # the parent kept its own
    assert "tok-child" in [body["token"] for body in fcm_settings.messages()]


def _send_in_child(backend: FcmBackend, queue: Any) -> None:
    ok = backend.send([_message("tok-child")])[0].ok
    queue.put((os.getpid(), backend.app.name, ok))


@pytest.fixture
def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
