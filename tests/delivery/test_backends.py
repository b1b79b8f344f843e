"""The push-backend interface: messages, the outbox backend, backend choice."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.models import Device
from audiences.preference_links import verify_token
from campaigns.models import Campaign, Variant
from campaigns.rendering import RenderedMessage
from delivery.backends import (
    ANALYTICS_LABEL_RE,
    DATA_PREFERENCES_URL,
    MAX_BATCH,
    PushBackendUnavailable,
    PushMessage,
    analytics_label_for,
    build_push_message,
    collapse_key_for,
    get_backend,
)
from delivery.backends.fcm_v1 import fcm_v1_body
from delivery.backends.outbox import OutboxBackend
from delivery.models import OutboxMessage
from delivery.receipts import click_token_verify
from notifyhub.exceptions import ApplicationError
from tests.factories import DeviceFactory

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def _variant(**overrides: object) -> Variant:
    """An unsaved variant with every platform option set."""
    values: dict[str, object] = {
        "name": "A",
        "image_url": "https://cdn.example.com/sale.png",
        "click_action": Variant.ClickAction.URL,
        "click_url": "https://shop.example.com/sale",
        "android_channel_id": "offers",
        "android_icon": "ic_sale",
        "ios_sound": "default",
        "ios_badge": 3,
        "web_icon": "https://cdn.example.com/icon.png",
        "web_actions": [
            {"action": "buy", "title": "Buy now"},
            {"action": "later", "title": "Later"},
            {"action": "third", "title": "Dropped: browsers show two"},
            {"action": "broken"},
        ],
    }
    values.update(overrides)
    return Variant(**values)


def _message(**overrides: object) -> PushMessage:
    campaign = Campaign(pk=42, ttl_seconds=3600, priority=Campaign.Priority.HIGH)
    device = Device(pk=7, token="tok-ios-1", platform=Device.Platform.IOS)
    rendered = RenderedMessage(
        title="Hi Ada",
        body="Sale in Berlin",
        click_url="https://shop.example.com/sale?u=1",
        data={"sku": "123"},
    )
    kwargs: dict[str, object] = {
        "delivery_id": 1001,
        "device": device,
        "campaign": campaign,
        "variant": _variant(),
        "rendered": rendered,
        "is_test": False,
        "run_id": 9,
    }
    kwargs.update(overrides)
    return build_push_message(**kwargs)  # type: ignore[arg-type]


TRACKED = re.compile(r"^http://localhost:8000/r/(?P<token>[^/]+)/$")


def test_build_push_message_maps_every_option() -> None:
    message = _message()
    # The http(s) click link goes through the signed, click-recording redirect.
    tracked = TRACKED.match(message.click_url)
    assert tracked is not None, message.click_url
    target = click_token_verify(token=tracked["token"])
    assert (target.delivery_id, target.target) == (1001, "https://shop.example.com/sale?u=1")
    assert message == PushMessage(
        delivery_id=1001,
        device_id=7,
        token="tok-ios-1",
        platform="ios",
        title="Hi Ada",
        body="Sale in Berlin",
        image_url="https://cdn.example.com/sale.png",
        click_url=message.click_url,
        data={
            "sku": "123",
            "nh_delivery_id": "1001",
            "nh_click_action": "url",
            "nh_click_url": message.click_url,
        },
        android={"channel_id": "offers", "icon": "ic_sale"},
        apns={"sound": "default", "badge": 3},
        webpush={
            "icon": "https://cdn.example.com/icon.png",
            "actions": [{"action": "buy", "title": "Buy now"}, {"action": "later", "title": "Later"}],
        },
        ttl_seconds=3600,
        priority="high",
        collapse_key="nh-9",
        analytics_label="campaign-42",
        is_test=False,
    )


def test_build_push_message_leaves_unset_options_out() -> None:
    bare = _variant(
        image_url="",
        click_url="",
        android_channel_id="",
        android_icon="",
        ios_sound="",
        ios_badge=None,
        web_icon="",
        web_actions=[],
    )
    message = _message(
        variant=bare,
        rendered=RenderedMessage(title="T", body="B", click_url="", data={}),
        delivery_id=None,
        is_test=True,
        campaign=Campaign(pk=5, ttl_seconds=60, priority=Campaign.Priority.NORMAL),
    )
    assert (message.android, message.apns, message.webpush, message.data) == ({}, {}, {}, {})
    assert message.priority == "normal"
    assert message.analytics_label == "campaign-5-test"
    assert message.is_test


def test_every_message_carries_its_subscribers_preference_center_url(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_PUBLIC_URL = "https://push.example.com/"
    message = _message(device=Device(pk=7, subscriber_id=31, token="tok-ios-1", platform=Device.Platform.IOS))
    url = message.data[DATA_PREFERENCES_URL]
    token = url.removeprefix("https://push.example.com/preferences/").removesuffix("/")
    assert url == f"https://push.example.com/preferences/{token}/"
    assert verify_token(token=token) == 31  # signed for that subscriber, opens without a login


@given(campaign_id=st.integers(min_value=1, max_value=2**63 - 1), is_test=st.booleans())
def test_analytics_label_follows_fcm_rules(campaign_id: int, is_test: bool) -> None:
    label = analytics_label_for(campaign_id=campaign_id, is_test=is_test)
    assert re.fullmatch(r"[a-zA-Z0-9\-_.~%]{1,50}", label)
    assert ANALYTICS_LABEL_RE.match(label)


@given(run_id=st.integers(min_value=1, max_value=2**63 - 1))
def test_collapse_key_fits_every_platform(run_id: int) -> None:
    key = collapse_key_for(run_id=run_id)
    # Web Push "Topic": at most 32 characters of the URL-safe base64 alphabet.
    assert re.fullmatch(r"[A-Za-z0-9\-_]{1,32}", key)


def test_fcm_v1_body_is_the_full_message(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_PUBLIC_URL = "https://push.example.com"  # web clicks need an https link
    message = _message()
    assert message.click_url.startswith("https://push.example.com/r/")
    body = fcm_v1_body(message, now=NOW)
    expires = str(int(NOW.timestamp()) + 3600)
    assert body == {
        "message": {
            "token": "tok-ios-1",
            "notification": {
                "title": "Hi Ada",
                "body": "Sale in Berlin",
                "image": "https://cdn.example.com/sale.png",
            },
            "data": {
                "sku": "123",
                "nh_delivery_id": "1001",
                "nh_click_action": "url",
                "nh_click_url": message.click_url,
            },
            "android": {
                "collapse_key": "nh-9",
                "priority": "HIGH",
                "ttl": "3600s",
                "notification": {"channel_id": "offers", "icon": "ic_sale"},
            },
            "apns": {
                "headers": {"apns-priority": "10", "apns-expiration": expires, "apns-collapse-id": "nh-9"},
                "payload": {"aps": {"sound": "default", "badge": 3, "mutable-content": 1}},
                "fcm_options": {"image": "https://cdn.example.com/sale.png"},
            },
            "webpush": {
                "headers": {"TTL": "3600", "Urgency": "high", "Topic": "nh-9"},
                "notification": {
                    "icon": "https://cdn.example.com/icon.png",
                    "actions": [{"action": "buy", "title": "Buy now"}, {"action": "later", "title": "Later"}],
                },
                "fcm_options": {"link": message.click_url},
            },
            "fcm_options": {"analytics_label": "campaign-42"},
        }
    }


def test_fcm_v1_body_web_link_only_https_and_zero_ttl() -> None:
    message = _message(
        rendered=RenderedMessage(title="T", body="B", click_url="myapp://sale", data={}),
        campaign=Campaign(pk=1, ttl_seconds=0, priority=Campaign.Priority.NORMAL),
    )
    body = fcm_v1_body(message, now=NOW)["message"]
    assert "fcm_options" not in body["webpush"]
    assert body["apns"]["headers"]["apns-expiration"] == "0"
    assert body["apns"]["headers"]["apns-priority"] == "5"
    assert body["android"]["ttl"] == "0s"
    assert body["data"]["nh_click_url"] == "myapp://sale"


@pytest.mark.django_db
def test_outbox_stores_each_message_with_its_full_payload(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    devices = DeviceFactory.create_batch(3)
    messages = [
        _message(device=device, delivery_id=None, is_test=index == 0) for index, device in enumerate(devices)
    ]
    with django_assert_num_queries(1):  # one INSERT for the batch
        results = OutboxBackend().send(messages)

    assert [r.ok for r in results] == [True, True, True]
    assert all(re.fullmatch(r"outbox-[0-9a-f]{32}", r.message_id) for r in results)
    stored = {row.message_id: row for row in OutboxMessage.objects.all()}
    for device, message, result in zip(devices, messages, results, strict=True):
        row = stored[result.message_id]
        assert row.device_id == device.pk
        assert (row.title, row.body, row.is_test) == ("Hi Ada", "Sale in Berlin", message.is_test)
        payload = row.payload["message"]
        assert payload["token"] == device.token
        assert payload["notification"] == {
            "title": "Hi Ada",
            "body": "Sale in Berlin",
            "image": "https://cdn.example.com/sale.png",
        }
        assert payload["fcm_options"] == {"analytics_label": message.analytics_label}
        assert set(payload) == {"token", "notification", "data", "android", "apns", "webpush", "fcm_options"}


@pytest.mark.django_db
def test_outbox_finds_devices_by_token_when_not_given() -> None:
    device = DeviceFactory()
    known = PushMessage(delivery_id=None, token=device.token, platform="android", title="T", body="B")
    unknown = PushMessage(delivery_id=None, token="nobody-has-this", platform="android", title="T", body="B")
    results = OutboxBackend().send([unknown, known])
    assert results[0].ok is False and results[0].token_invalid and results[0].error_code == "INVALID_ARGUMENT"
    assert results[1].ok
    assert OutboxMessage.objects.get().device_id == device.pk


def test_outbox_refuses_more_than_a_batch() -> None:
    message = PushMessage(delivery_id=None, token="t", platform="web", title="T", body="B", device_id=1)
    with pytest.raises(ValueError, match="at most 500"):
        OutboxBackend().send([message] * (MAX_BATCH + 1))


def test_get_backend_is_the_outbox_by_default_and_cached(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_PUSH_BACKEND = "outbox"
    backend = get_backend()
    assert isinstance(backend, OutboxBackend)
    assert get_backend() is backend


def test_get_backend_refuses_an_unknown_backend(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_PUSH_BACKEND = "carrier-pigeon"
    with pytest.raises(PushBackendUnavailable) as caught:
        get_backend()
    assert isinstance(caught.value, ApplicationError)
    assert "'carrier-pigeon' is not a push backend; use one of: fcm, outbox" in str(caught.value)
