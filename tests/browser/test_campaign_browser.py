"""A marketer builds, previews, test-sends and launches a campaign (Chromium via Playwright).

Two variants written in English, German and Arabic through modeltranslation's
language tabs, personalized with the subscriber's first name; the device preview
for a sample subscriber and for an Arabic speaker (right to left); a test to the
marketer's own device through the configured (outbox) push backend; a one-off
launch that becomes a django-celery-beat task on a clocked schedule, then a daily
copy of it on a crontab. No request leaves 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from playwright.sync_api import Locator, Page, expect

from audiences.models import Topic
from campaigns.models import Campaign, TestDevice
from campaigns.roles import MARKETER, roles_sync
from delivery import tasks
from delivery.models import OutboxMessage, Run
from tests.browser.support import ARTIFACTS, PASSWORD, USERNAME, NetworkLog, log_in
from tests.factories import DeviceFactory, SubscriberFactory

pytestmark = [pytest.mark.browser]

GREETING = {
    "en": ('Hi {{ subscriber.first_name|default:"there" }}', "Spring sale: 20% off everything."),
    "de": ('Hallo {{ subscriber.first_name|default:"du" }}', "Frühlingsangebot: 20 % auf alles."),
    "ar": ('مرحبا {{ subscriber.first_name|default:"صديقي" }}', "تخفيضات الربيع: خصم 20٪ على كل شيء."),
}
NEWS = {
    "en": ("New this spring", "{{ subscriber.first_name|default:'Friend' }}, see what just arrived."),
    "de": ("Neu im Frühling", "{{ subscriber.first_name|default:'Hallo' }}, schau, was neu ist."),
    "ar": ("جديد هذا الربيع", "شاهد ما وصل للتو."),
}


@pytest.fixture
def marketer(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> User:
    """A Marketer with a registered test device, a topic, and a small audience."""
    roles_sync(apps)  # the groups come from a migration, which transactional tests flush
    user = User.objects.create_user(USERNAME, "marketer@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=MARKETER))
    Topic.objects.create(slug="offers", name="Offers", name_en="Offers", default_opt_in=True)
    for external_id, first_name, language in (
        ("grace", "Grace", "en"),
        ("hans", "Hans", "de"),
        ("layla", "Layla", "ar"),
        ("amelie", "Amélie", "fr"),
    ):
        DeviceFactory(
            subscriber=SubscriberFactory(external_id=external_id, first_name=first_name, language=language)
        )
    own_phone = DeviceFactory(subscriber=SubscriberFactory(external_id="staff-phone", first_name="Morgan"))
    TestDevice.objects.create(user=user, device=own_phone, label="My Pixel")
    # "The test goes out at once": the live server runs the send task in-process
    # (no broker, no worker) through the configured push backend (outbox).
    monkeypatch.setattr(tasks.send_test_run, "delay", lambda run_id: tasks.send_test_run(run_id))
    return user


def fill_language(page: Page, prefix: str, field: str, language: str, text: str) -> None:
    """Click the language tab of one translated field, then type into it."""
    tab = page.locator(f'[role="tab"][aria-controls="tab_id_{prefix}-{field}_{language}"]')
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    box = page.locator(f"#id_{prefix}-{field}_{language}")
    expect(box).to_be_visible()
    box.fill(text)


def write_variant(page: Page, index: int, texts: dict[str, tuple[str, str]]) -> None:
    prefix = f"variants-{index}"
    for language, (title, body) in texts.items():
        fill_language(page, prefix, "title", language, title)
        fill_language(page, prefix, "body", language, body)


def mockup(page: Page, platform: str) -> Locator:
    return page.locator(f"#mock-{platform}")


def click_action(page: Page, key: str) -> None:
    page.locator(f'#campaign-actions [data-campaign-action="{key}"]').click()


def test_marketer_builds_previews_tests_and_launches_a_campaign(
    page: Page, marketer: User, network: NetworkLog
) -> None:
    log_in(page)
    page.goto("/admin/campaigns/campaign/add/")
    page.locator("#id_name").fill("Spring sale")
    page.locator("#id_topic").select_option(label="Offers")
    page.locator("#id_ab_mode").select_option("split")
    page.locator("#id_schedule_type").select_option("at")
    send_at = (timezone.now() + dt.timedelta(days=7)).replace(hour=9, minute=30, second=0, microsecond=0)
    page.locator("#id_send_at_0").fill(send_at.strftime("%Y-%m-%d"))
    page.locator("#id_send_at_1").fill("09:30:00")
    expect(page.locator("#id_cron_expression")).to_be_hidden()  # only for the "cron" schedule

    # Variant A and B, each in three languages, through the tabs. A field of another
    # language is hidden until its tab is chosen.
    expect(page.locator("#id_variants-0-title_de")).to_be_hidden()
    write_variant(page, 0, GREETING)
    expect(page.locator("#id_variants-0-title_en")).to_be_hidden()  # the Arabic tab is showing
    expect(page.locator("#id_variants-1-name")).to_have_value("B")
    write_variant(page, 1, NEWS)
    # "Add another variant" gets the same language tabs and the next free name…
    page.locator("#variants-group .add-row").click()
    expect(page.locator("#id_variants-2-name")).to_have_value("C")
    expect(page.locator('[role="tab"][aria-controls="tab_id_variants-2-title_de"]')).to_be_visible()
    expect(page.locator("#id_variants-2-title_de")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "campaign-add-variants.png", full_page=True)
    # …and is removed again: this campaign has two.
    added = page.locator("#variants-group .form-group").filter(has=page.locator("#id_variants-2-name"))
    added.locator(".delete-template").first.click()
    expect(page.locator("#id_variants-2-name")).to_have_count(0)
    page.locator("[name=_continue]").click()

    expect(page).to_have_url(re.compile(r"/admin/campaigns/campaign/\d+/change/"))
    campaign = Campaign.objects.get(name="Spring sale")
    variants = {v.name: v for v in campaign.variants.all()}
    assert set(variants) == {"A", "B"} and campaign.created_by == marketer
    assert (variants["A"].title_de, variants["B"].body_ar) == (GREETING["de"][0], NEWS["ar"][1])
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    coverage = page.locator("#coverage-table")
    expect(coverage).to_contain_text("1 subscriber will get English instead of French")
    expect(coverage).to_contain_text("1 subscriber will get Arabic")

    # The preview: a sample subscriber (Grace, English) on three devices.
    page.locator("#campaign-preview-link").click()
    expect(page).to_have_url(re.compile(rf"/admin/campaigns/campaign/{campaign.pk}/preview/"))
    for platform in ("android", "ios", "web"):
        expect(mockup(page, platform).locator("[data-mock-title]")).to_have_text("Hi Grace")
        expect(mockup(page, platform).locator("[data-mock-body]")).to_have_text(
            "Spring sale: 20% off everything."
        )
        expect(mockup(page, platform)).to_have_attribute("dir", "ltr")
    page.screenshot(path=ARTIFACTS / "campaign-preview-en.png", full_page=True)

    # Layla reads Arabic: typing her external id shows what she gets, right to left.
    page.locator("#id_subscriber").fill("layla")
    page.locator("#subscriber-picker [type=submit]").click()
    for platform in ("android", "ios", "web"):
        expect(mockup(page, platform)).to_have_attribute("dir", "rtl")
        expect(mockup(page, platform)).to_have_attribute("lang", "ar")
        expect(mockup(page, platform).locator("[data-mock-title]")).to_have_text("مرحبا Layla")
    direction = (
        mockup(page, "ios").locator("[data-mock-title]").evaluate("el => getComputedStyle(el).direction")
    )
    assert direction == "rtl"
    page.screenshot(path=ARTIFACTS / "campaign-preview-ar.png", full_page=True)

    # Variant B in German, for the same person: the tabs are links.
    page.locator('#variant-tabs [data-variant="B"]').click()
    page.locator('#language-tabs [data-lang="de"]').click()
    expect(mockup(page, "web").locator("[data-mock-title]")).to_have_text("Neu im Frühling")
    expect(mockup(page, "web")).to_have_attribute("dir", "ltr")

    # Send a test of what is on screen (variant B, German) to the marketer's device.
    page.locator('#send-test-form [data-campaign-action="send-test"]').click()
    expect(page.locator("body")).to_contain_text("Test queued to 1 device.")
    expect(page.locator("#preview-who")).to_contain_text("Layla")  # back where the marketer was
    run = Run.objects.get(campaign=campaign, is_test=True)
    sent = OutboxMessage.objects.get()
    assert sent.is_test and sent.device_id == TestDevice.objects.get(user=marketer).device_id
    assert sent.title == "Neu im Frühling" and sent.body.startswith("Morgan, schau")
    assert run.deliveries.get().status == "sent"
    page.screenshot(path=ARTIFACTS / "campaign-test-sent.png", full_page=True)

    # Launch the one-off: scheduled, on a clocked django-celery-beat task.
    page.locator("#back-to-campaign").click()
    click_action(page, "launch")
    expect(page.locator("#campaign-status")).to_have_text("Scheduled")
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.enabled and task.one_off and task.clocked is not None and task.crontab is None
    assert task.clocked.clocked_time == send_at
    page.screenshot(path=ARTIFACTS / "campaign-launched.png")  # the workspace bar, above the fold

    # A daily copy: duplicate, make it recurring at 08:15, launch → a crontab.
    click_action(page, "duplicate")
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    page.locator("#id_name").fill("Spring news, daily")
    page.locator("#id_kind").select_option("recurring")
    page.locator("#id_schedule_type").select_option("daily")
    expect(page.locator("#id_send_at_0")).to_be_hidden()
    page.locator("#id_local_time").fill("08:15")
    page.locator("#id_schedule_timezone").fill("Europe/Berlin")
    page.locator("[name=_continue]").click()
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    click_action(page, "launch")
    expect(page.locator("#campaign-status")).to_have_text("Scheduled")
    copy.refresh_from_db()
    assert (copy.name, copy.status, copy.kind) == ("Spring news, daily", "scheduled", "recurring")
    daily = PeriodicTask.objects.get(pk=copy.periodic_task_id)
    assert daily.clocked is None and not daily.one_off and daily.crontab is not None
    crontab = CrontabSchedule.objects.get(pk=daily.crontab_id)
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "15",
        "8",
        "*",
        "Europe/Berlin",
    )
    page.screenshot(path=ARTIFACTS / "campaign-recurring-launched.png", full_page=True)
    network.assert_clean()
