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

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Count
from playwright.sync_api import Page, expect

from audiences.models import ConsentRecord, Device, Subscriber, Topic
from audiences.services import ConsentContext, subscriber_update_preferences
from tests.browser.support import ARTIFACTS, PASSWORD, USERNAME, NetworkLog, log_in

pytestmark = [pytest.mark.browser]


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
