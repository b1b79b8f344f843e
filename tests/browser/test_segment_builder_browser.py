"""A marketer builds a segment in the visual builder (Chromium via Playwright).

Two conditions picked from dropdowns, the live estimate following each change to
the right number, save, reopen: the builder shows the saved rules. No JSON typed,
no request leaving 127.0.0.1.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from audiences.models import Segment
from tests.browser.support import ARTIFACTS, PASSWORD, USERNAME, NetworkLog, log_in
from tests.factories import DeviceFactory, SubscriberFactory

pytestmark = [pytest.mark.browser]


@pytest.fixture
def shoppers(transactional_db: None) -> None:
    User.objects.create_superuser(USERNAME, "marketer@example.com", PASSWORD)
    for i in range(4):  # Spanish buyers: 3 bought twice or more
        s = SubscriberFactory(external_id=f"es-{i}", country="ES", city="Madrid", purchase_count=i + 1)
        DeviceFactory(subscriber=s, platform="ios")
    for i in range(3):
        SubscriberFactory(external_id=f"es-new-{i}", country="ES", purchase_count=0)
    for i in range(5):
        SubscriberFactory(external_id=f"de-{i}", country="DE", purchase_count=5)


def test_marketer_builds_a_two_condition_segment_with_live_counts(
    page: Page,
    shoppers: None,
    network: NetworkLog,
) -> None:
    log_in(page)
    page.goto("/admin/audiences/segment/add/")
    page.locator("#id_name").fill("Spanish repeat buyers")
    builder = page.locator("[data-segment-builder]")
    expect(builder.locator("[data-estimate-status]")).to_have_text("Add a condition to see who matches.")

    include = builder.locator(".nh-group--root")
    include.locator("> .nh-group__actions [data-action=add-condition]").click()
    first = include.locator("[data-node=condition]").nth(0)
    first.locator("[data-role=field]").select_option("country")
    expect(first.locator("[data-role=operator]")).to_have_value("in")
    first.locator("[data-role=value] input").fill("ES")
    total = builder.locator("#segment-estimate-total")
    expect(total).to_have_text("7")
    expect(builder.locator("#segment-estimate-reachable")).to_have_text("4")  # the four with a device
    page.screenshot(path=ARTIFACTS / "segment-builder-one-condition.png", full_page=True)

    include.locator("> .nh-group__actions [data-action=add-condition]").click()
    second = include.locator("[data-node=condition]").nth(1)
    second.locator("[data-role=field]").select_option("purchase_count")
    second.locator("[data-role=operator]").select_option("gte")
    value = second.locator("[data-role=value] input")
    value.fill("2")
    expect(total).to_have_text("3")
    expect(builder.locator("#segment-estimate-reachable")).to_have_text("3")
    expect(builder.locator("[data-estimate-sample] li")).to_have_count(3)
    page.screenshot(path=ARTIFACTS / "segment-builder-two-conditions.png", full_page=True)

    page.locator("[name=_save]").click()
    expect(page).to_have_url(re.compile(r"/admin/audiences/segment/$"))
    segment = Segment.objects.get(name="Spanish repeat buyers")
    assert segment.rules["conditions"] == [
        {"field": "country", "op": "in", "value": ["ES"]},
        {"field": "purchase_count", "op": "gte", "value": 2},
    ]
    assert segment.last_count == 3

    page.locator("#result_list").get_by_role("link", name="Spanish repeat buyers").click()
    expect(page).to_have_url(re.compile(rf"/admin/audiences/segment/{segment.pk}/change/"))
    conditions = page.locator(".nh-group--root [data-node=condition]")
    expect(conditions).to_have_count(2)
    expect(conditions.nth(0).locator("[data-role=field]")).to_have_value("country")
    expect(conditions.nth(0).locator("[data-role=value] input")).to_have_value("ES")
    expect(conditions.nth(1).locator("[data-role=field]")).to_have_value("purchase_count")
    expect(conditions.nth(1).locator("[data-role=operator]")).to_have_value("gte")
    expect(conditions.nth(1).locator("[data-role=value] input")).to_have_value("2")
    expect(page.locator("#segment-estimate-total")).to_have_text("3")
    page.screenshot(path=ARTIFACTS / "segment-builder-reopened.png", full_page=True)
    network.assert_clean()


def test_invalid_value_is_shown_next_to_its_condition(
    page: Page,
    shoppers: None,
    network: NetworkLog,
) -> None:
    log_in(page)
    page.goto("/admin/audiences/segment/add/")
    include = page.locator(".nh-group--root")
    include.locator("> .nh-group__actions [data-action=add-condition]").click()
    condition = include.locator("[data-node=condition]").first
    condition.locator("[data-role=field]").select_option("country")
    condition.locator("[data-role=value] input").fill("Spain")
    problem = page.locator('[data-problem-for="conditions.0"]')
    expect(problem).to_contain_text("use two-letter country codes like ES or DE")
    expect(page.locator("#segment-estimate-total")).to_have_text("—")
    condition.locator("[data-role=value] input").fill("es")
    expect(problem).to_be_hidden()
    expect(page.locator("#segment-estimate-total")).to_have_text("7")
    # The endpoint answered the invalid rules with 400 and the problems; nothing else failed.
    assert network.errors and {(status, url.split("/admin/")[1]) for status, url in network.errors} == {
        (400, "audiences/segment/estimate/")
    }
    network.errors.clear()
    network.assert_clean()
