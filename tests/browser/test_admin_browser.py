"""The admin as a marketer uses it, in Debian's Chromium driven by Playwright.

Each test logs in through the real login form of a live server and checks what a
person would see: the dashboard's headline numbers, a subscriber found by search,
and a topic's translation tabs. Every page load is also watched on the network: the
admin must fetch nothing from another host (no CDN for the skin, fonts or jQuery UI)
and no asset may fail to load.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Count
from playwright.sync_api import Page, Request, Response, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from audiences.models import ConsentRecord, Device, Subscriber, Topic
from audiences.services import ConsentContext, subscriber_update_preferences
from tests.services import require_chromium

pytestmark = [pytest.mark.browser]

USERNAME = "marketer"
PASSWORD = "correct-horse-battery-staple"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class NetworkLog:
    """Everything the page asked for, and what went wrong, across navigations."""

    requests: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append((response.status, response.url))

    def on_request_failed(self, request: Request) -> None:
        self.failed.append(f"{request.url} ({request.failure})")

    def assert_clean(self) -> None:
        assert self.requests, "the page made no requests at all"
        foreign = [
            url
            for url in self.requests
            if urlsplit(url).scheme not in {"data", "blob", "about"}
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]
        assert not foreign, f"requests left the machine (CDN?): {foreign}"
        static_errors = [e for e in self.errors if urlsplit(e[1]).path.startswith(settings.STATIC_URL)]
        assert not static_errors, f"static assets failed: {static_errors}"
        assert not self.errors, f"requests failed: {self.errors}"
        assert not self.failed, f"requests did not complete: {self.failed}"
        assert not self.page_errors, f"JavaScript errors on the page: {self.page_errors}"


@pytest.fixture
def allow_sync_db_under_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API runs an asyncio event loop in this thread (it switches
    # to it with greenlets), so Django sees a "running loop" and refuses ORM calls
    # made from the test and its fixtures (SynchronousOnlyOperation). Nothing is async:
    # the test and the live server thread each use their own connection
    # synchronously. Scoped to these tests so the check stays on everywhere else.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def audience(transactional_db: None) -> Subscriber:
    """Demo data through the real code, plus one subscriber who opted out in the admin."""
    User.objects.create_superuser(USERNAME, "marketer@example.com", PASSWORD)
    call_command("seed_demo", count=30, stdout=io.StringIO())
    subscriber = Subscriber.objects.filter(language="de", push_opt_in=True).order_by("external_id").first()
    assert subscriber is not None
    subscriber_update_preferences(
        subscriber=subscriber,
        context=ConsentContext(source=ConsentRecord.Source.ADMIN, source_detail="browser test"),
        push_opt_in=False,
    )
    return subscriber


@pytest.fixture
def network() -> NetworkLog:
    return NetworkLog()


@pytest.fixture
def browser_locale() -> str:
    """The browser's language (Accept-Language); the admin follows it (LocaleMiddleware)."""
    return "en-US"


@pytest.fixture
def page(
    live_server: LiveServer,
    transactional_db: None,
    tmp_path: Path,
    network: NetworkLog,
    browser_locale: str,
    allow_sync_db_under_playwright: None,
) -> Iterator[Page]:
    chromium = require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            base_url=live_server.url,
            viewport={"width": 1280, "height": 900},
            locale=browser_locale,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("request", network.on_request)
            page.on("response", network.on_response)
            page.on("requestfailed", network.on_request_failed)
            page.on("pageerror", lambda error: network.page_errors.append(str(error)))
            yield page
        finally:
            context.close()


def log_in(page: Page) -> None:
    # By id, not by label text: the login page is translated for some tests.
    page.goto("/admin/login/")
    page.locator("#id_username").fill(USERNAME)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))


def test_dashboard_shows_the_real_audience_numbers(page: Page, audience: Subscriber, network: NetworkLog):
    live = Subscriber.objects.filter(erased_at__isnull=True)
    subscribers = live.count()
    opted_in = live.filter(push_opt_in=True).count()
    reachable_devices = Device.objects.filter(
        is_active=True, subscriber__push_opt_in=True, subscriber__erased_at__isnull=True
    ).count()
    # The demo data has opt-outs and dead tokens, so these really are three numbers.
    assert 0 < opted_in < subscribers
    assert reachable_devices != Device.objects.count()

    log_in(page)

    expect(page.locator("#notifyhub-dashboard")).to_be_visible()
    expect(page.locator("#kpi-subscribers [data-kpi-value]")).to_have_text(f"{subscribers:,}")
    expect(page.locator("#kpi-devices [data-kpi-value]")).to_have_text(f"{reachable_devices:,}")
    expect(page.locator("#kpi-opt-in [data-kpi-value]")).to_have_text(f"{opted_in / subscribers:.1%}")
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    network.assert_clean()


@pytest.mark.parametrize("browser_locale", ["de-DE"])
def test_dashboard_language_bars_in_a_german_browser(page: Page, audience: Subscriber, network: NetworkLog):
    """Shares like 33.3 are written into CSS widths, where "33,3%" would be invalid."""
    by_language = dict(
        Subscriber.objects.filter(erased_at__isnull=True)
        .values_list("language")
        .annotate(n=Count("pk"))
        .order_by("-n", "language")
    )
    total = sum(by_language.values())
    top_language, top_count = next(iter(by_language.items()))

    log_in(page)

    expect(page.locator("html")).to_have_attribute("lang", "de")
    rows = page.locator("#languages li")
    expect(rows).to_have_count(len(by_language))
    top = rows.first
    expect(top.locator(f'[lang="{top_language}"]')).to_be_visible()
    bar = top.locator('[style*="width"]')
    expect(bar).to_be_visible()
    bar_box, track_box = bar.bounding_box(), bar.locator("..").bounding_box()
    assert bar_box is not None and track_box is not None
    assert bar_box["width"] / track_box["width"] == pytest.approx(top_count / total, abs=0.02)
    page.screenshot(path=ARTIFACTS / "dashboard-de.png", full_page=True)
    network.assert_clean()


def test_subscriber_is_found_and_opened_from_the_changelist(
    page: Page, audience: Subscriber, network: NetworkLog
):
    subscriber = audience
    log_in(page)

    page.locator("#kpi-subscribers").click()
    expect(page).to_have_url(re.compile(r"/admin/audiences/subscriber/$"))
    page.locator("#searchbar").fill(subscriber.external_id)
    page.locator("#searchbar").press("Enter")
    expect(page).to_have_url(re.compile(rf"\?q={re.escape(subscriber.external_id)}$"))
    page.get_by_role("link", name=subscriber.external_id, exact=True).click()

    expect(page).to_have_url(re.compile(rf"/admin/audiences/subscriber/{subscriber.pk}/change/"))
    # The header names the subscriber: "First Last (external id)".
    expect(page.get_by_text(str(subscriber), exact=True).first).to_be_visible()
    expect(page.locator("#id_external_id")).to_have_value(subscriber.external_id)
    expect(page.locator("#id_first_name")).to_have_value(subscriber.first_name)
    expect(page.locator("#id_last_name")).to_have_value(subscriber.last_name)
    # The opt-out made in the fixture shows, and so does its consent-ledger entry.
    expect(page.locator("#id_push_opt_in")).not_to_be_checked()
    expect(page.get_by_text("browser test", exact=True).first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "subscriber.png", full_page=True)
    network.assert_clean()


def test_topic_translation_tabs_switch_language(page: Page, audience: Subscriber, network: NetworkLog):
    topic = Topic.objects.create(
        slug="flash-sales",
        name_en="Flash sales",
        name_de="Blitzangebote",
        name_fr="Ventes flash",
        description_en="Deals that last an hour.",
        description_de="Angebote für eine Stunde.",
    )
    log_in(page)

    page.goto("/admin/audiences/topic/")
    page.get_by_role("link", name="Flash sales", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/admin/audiences/topic/{topic.pk}/change/"))

    # modeltranslation's tabbed admin wraps each translated field in jQuery UI tabs:
    # one role="tab" per language, controlling the panel "tab_<input id>".
    english, german = page.locator("#id_name_en"), page.locator("#id_name_de")
    german_tab = page.locator('[role="tab"][aria-controls="tab_id_name_de"]')
    expect(german_tab).to_be_visible()
    expect(english).to_be_visible()
    expect(english).to_have_value("Flash sales")
    expect(german).to_be_hidden()

    german_tab.click()

    expect(german_tab).to_have_attribute("aria-selected", "true")
    expect(german).to_be_visible()
    expect(german).to_have_value("Blitzangebote")
    expect(english).to_be_hidden()
    # Only the name field switched: the description keeps its own tab set.
    expect(page.locator("#id_description_en")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "topic-tabs.png", full_page=True)
    network.assert_clean()
