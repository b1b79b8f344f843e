"""A subscriber manages their notifications on the preference center, in Chromium.

Opened from the signed link the API hands out, on a phone-sized screen: toggle topics
and save, set quiet hours and a time zone, switch the page to Spanish and to Arabic
(right-to-left), unsubscribe from everything, and open a tampered link. The page must
load nothing from another host, log no console errors (a Content-Security-Policy
violation is one), and keep working with JavaScript turned off.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, ViewportSize, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from audiences import preference_links
from audiences.models import ConsentRecord, Subscriber, Topic, TopicPreference
from tests.browser.support import ARTIFACTS, CHROMIUM_ARGS, NetworkLog
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory
from tests.services import require_chromium

pytestmark = [pytest.mark.browser]

PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def own_cache(settings: Any) -> None:
    # The bad-token counters live in the cache: a private one per test.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }


@pytest.fixture
def subscriber(transactional_db: None) -> Subscriber:
    TopicFactory(
        slug="offers",
        name="Offers",
        name_en="Offers",
        name_es="Ofertas",
        name_ar="العروض",
        description_en="Deals picked for you.",
        description_es="Ofertas elegidas para ti.",
        description_ar="عروض مختارة لك.",
        default_opt_in=True,
        sort_order=1,
    )
    TopicFactory(
        slug="news",
        name="News",
        name_en="News",
        name_es="Novedades",
        name_ar="الأخبار",
        default_opt_in=False,
        sort_order=2,
    )
    TopicFactory(
        slug="orders",
        name="Order updates",
        name_en="Order updates",
        name_es="Estado de tus pedidos",
        name_ar="تحديثات الطلبات",
        is_transactional=True,
        sort_order=3,
    )
    subscriber = SubscriberFactory(language="en", timezone="Europe/Berlin")
    DeviceFactory(subscriber=subscriber)
    return subscriber


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    return errors


def link(subscriber: Subscriber) -> str:
    return preference_links.preference_path(token=preference_links.make_token(subscriber=subscriber))


def topic_choices(subscriber: Subscriber) -> dict[str, bool]:
    return dict(TopicPreference.objects.filter(subscriber=subscriber).values_list("topic__slug", "opted_in"))


def test_subscriber_chooses_topics_quiet_hours_and_language_then_unsubscribes(
    page: Page, subscriber: Subscriber, network: NetworkLog, console_errors: list[str]
) -> None:
    page.set_viewport_size(PHONE)
    url = link(subscriber)
    page.goto(url)

    expect(page.get_by_role("heading", level=1)).to_have_text("Your notification preferences")
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    offers, news = page.get_by_label("Offers"), page.get_by_label("News")
    expect(offers).to_be_checked()
    expect(news).not_to_be_checked()
    # Nothing overflows sideways on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=ARTIFACTS / "preferences-phone-en.png", full_page=True)

    # Keyboard users see where they are.
    page.get_by_label("Send me push notifications").focus()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in {"", "none"}

    # Toggle topics, choose a frequency, set quiet hours in another time zone, save.
    offers.uncheck()
    news.check()
    page.get_by_label("At most one a week").check()
    page.get_by_label("Quiet from").fill("22:00")
    page.get_by_label("Quiet until").fill("07:30")
    page.get_by_label("Your time zone").select_option("America/New_York")
    page.get_by_role("button", name="Save my choices").click()

    message = page.locator("#pc-messages")
    expect(message).to_have_text("Your choices are saved.")
    expect(message).to_be_focused()  # announced to screen readers (enhancement)
    expect(page.get_by_label("Offers")).not_to_be_checked()
    expect(page.get_by_label("News")).to_be_checked()
    expect(page.get_by_label("Quiet from")).to_have_value("22:00")
    page.screenshot(path=ARTIFACTS / "preferences-saved.png", full_page=True)

    subscriber.refresh_from_db()
    assert topic_choices(subscriber) == {"offers": False, "news": True, "orders": True}
    assert (subscriber.quiet_hours_start, subscriber.quiet_hours_end) == (dt.time(22), dt.time(7, 30))
    assert (subscriber.timezone, subscriber.frequency_limit) == ("America/New_York", "weekly")
    records = ConsentRecord.objects.filter(subscriber=subscriber)
    assert {r.field for r in records} == {"topic", "frequency_limit", "quiet_hours"}
    assert {r.source for r in records} == {"preference_center"}

    # Switch the page to Spanish: it re-renders translated, nothing is saved.
    page.get_by_label("Show this page in").select_option("es")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page).to_have_url(re.compile(r"\?lang=es$"))
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tus preferencias de notificaciones")
    expect(page.get_by_label("Ofertas", exact=True)).not_to_be_checked()
    expect(page.get_by_text("Ofertas elegidas para ti.")).to_be_visible()
    expect(page.get_by_role("button", name="Guardar mis preferencias")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.language == "en"

    # Then Arabic: right to left, and saving stores the language.
    page.get_by_label("Ver esta página en").select_option("ar")
    page.get_by_role("button", name="Mostrar", exact=True).click()
    html = page.locator("html")
    expect(html).to_have_attribute("dir", "rtl")
    expect(html).to_have_attribute("lang", "ar")
    expect(page.get_by_role("heading", level=1)).to_have_text("تفضيلات الإشعارات الخاصة بك")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    checkbox = page.get_by_label("الأخبار").bounding_box()
    label = page.locator("label[for=id_topic_news]").bounding_box()
    assert checkbox is not None and label is not None
    assert checkbox["x"] > label["x"], "in Arabic the checkbox sits to the right of its label"
    page.screenshot(path=ARTIFACTS / "preferences-ar.png", full_page=True)
    page.get_by_role("button", name="احفظ اختياراتي").click()
    expect(page.locator("#pc-messages")).to_have_text("تم حفظ اختياراتك.")
    subscriber.refresh_from_db()
    assert subscriber.language == "ar"
    expect(page).not_to_have_url(re.compile(r"lang="))  # the page now follows the saved language

    # Clear quiet hours with the enhancement's button and save.
    page.get_by_role("button", name="مسح ساعات الهدوء").click()
    expect(page.locator("#id_quiet_start")).to_have_value("")
    page.get_by_role("button", name="احفظ اختياراتي").click()
    expect(page.locator("#pc-messages")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.quiet_hours_start is None and subscriber.quiet_hours_end is None

    # Unsubscribe from everything in one click (back in English).
    page.goto(url + "?lang=en")
    page.get_by_role("button", name="Unsubscribe from all").click()
    expect(page.locator("#pc-messages")).to_contain_text("You are unsubscribed from all notifications.")
    expect(page.locator("#pc-status-off")).to_be_visible()
    expect(page.get_by_label("Send me push notifications")).not_to_be_checked()
    for topic in Topic.objects.all():
        expect(page.get_by_label(topic.name, exact=True)).not_to_be_checked()
    page.screenshot(path=ARTIFACTS / "preferences-unsubscribed.png", full_page=True)
    subscriber.refresh_from_db()
    assert subscriber.push_opt_in is False
    assert set(topic_choices(subscriber).values()) == {False}

    network.assert_clean()
    assert not console_errors, console_errors


def test_a_tampered_link_shows_the_generic_page(
    page: Page, subscriber: Subscriber, network: NetworkLog, console_errors: list[str]
) -> None:
    url = link(subscriber)
    tampered = url[:-8] + ("x" if url[-8] != "x" else "y") + url[-7:]
    response = page.goto(tampered)
    assert response is not None and response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    expect(page.locator("body")).not_to_contain_text(subscriber.external_id)
    expect(page.locator("form")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "preferences-tampered-link.png", full_page=True)
    # The page itself is the one expected 400; its assets all loaded, from here.
    assert network.errors == [(400, page.url)]
    network.errors.clear()
    network.assert_clean()
    # Chromium logs the document's own 400 status; nothing else may be there.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]
    assert ConsentRecord.objects.count() == 0


@pytest.fixture
def no_js_page(
    live_server: LiveServer, subscriber: Subscriber, allow_sync_db_under_playwright: None
) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_chromium(), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(base_url=live_server.url, java_script_enabled=False, viewport=PHONE)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_everything_works_without_javascript(no_js_page: Page, subscriber: Subscriber) -> None:
    page = no_js_page
    page.goto(link(subscriber))
    # The enhancement-only button stays hidden; the form is all there.
    expect(page.locator("#pc-quiet-clear")).to_be_hidden()
    page.get_by_label("Offers").uncheck()
    page.get_by_label("Quiet from").fill("21:00")
    page.get_by_label("Quiet until").fill("08:00")
    page.get_by_role("button", name="Save my choices").click()
    expect(page.locator("#pc-messages")).to_have_text("Your choices are saved.")
    subscriber.refresh_from_db()
    assert topic_choices(subscriber)["offers"] is False
    assert subscriber.quiet_hours_start == dt.time(21)

    # An invalid entry comes back with its error, next to the field and in the summary.
    page.get_by_label("Quiet until").fill("21:00")
    page.get_by_role("button", name="Save my choices").click()
    expect(page.locator("#pc-error-summary")).to_be_visible()
    expect(page.locator("#id_quiet_end-error")).to_have_text(
        "Quiet hours must end at a different time than they start."
    )

    page.get_by_role("button", name="Pause for a week").click()
    expect(page.locator("#pc-status-paused")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "preferences-no-js-paused.png", full_page=True)
    subscriber.refresh_from_db()
    assert subscriber.is_paused
