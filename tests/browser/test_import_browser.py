"""A marketer imports a CSV in Chromium: upload → dry-run preview → fix options → confirm.

Reuses the admin browser tests' Chromium/Playwright fixtures (local-only network,
no JavaScript errors). The file has one invalid row and a name with HTML in it: the
preview must list the error with its line and column, refuse to import until the
marketer chooses to skip invalid rows, and show the name as text everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Dialog, Page, expect

from audiences.models import ConsentRecord, ImportJob, Segment, Subscriber
from tests.browser.support import ARTIFACTS, PASSWORD, USERNAME, NetworkLog, log_in
from tests.factories import SubscriberFactory, TopicFactory

pytestmark = [pytest.mark.browser]

SCRIPT = "<script>alert(1)</script>"
CSV = (
    "Customer Id;E-mail;First Name;Country Code;Offers;Consent Source;Consent Time\n"
    f"shop-1;ada@example.com;{SCRIPT};DE;yes;checkout;2024-03-01 10:00\n"
    "shop-2;not-an-email;Bob;ES;no;;\n"
    "shop-3;cy@example.com;Cy;FR;;;\n"
    "existing;new@example.com;;;;;\n"
)


@pytest.fixture
def marketer(transactional_db: None, settings: Any, tmp_path: Path) -> User:
    settings.MEDIA_ROOT = tmp_path / "media"  # the upload is stored there
    TopicFactory(slug="offers", name="Offers", name_en="Offers", default_opt_in=False)
    SubscriberFactory(external_id="existing", email="old@example.com")
    return User.objects.create_superuser(USERNAME, "marketer@example.com", PASSWORD)


def test_upload_preview_skip_invalid_and_confirm(
    page: Page,
    marketer: User,
    network: NetworkLog,
    tmp_path: Path,
) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    path = tmp_path / "shop-export.csv"
    path.write_text(CSV, encoding="utf-8-sig")  # as Excel saves "CSV UTF-8"
    log_in(page)

    page.get_by_role("link", name="Imports").first.click()
    expect(page).to_have_url(re.compile(r"/admin/audiences/importjob/$"))
    page.goto("/admin/audiences/importjob/add/")
    page.locator("#id_file").set_input_files(str(path))
    page.locator("#id_segment_name").fill("Shop export")
    page.locator("#upload-submit").click()

    # The dry-run preview: counts, the error with line and column, the pre-filled mapping.
    expect(page.locator("#dry-run-note")).to_be_visible()
    expect(page.locator("#job-format")).to_have_text("UTF-8 with byte-order mark, semicolon-separated")
    expect(page.locator("#count-created [data-count]")).to_have_text("2")
    expect(page.locator("#count-updated [data-count]")).to_have_text("1")
    expect(page.locator("#count-errors [data-count]")).to_have_text("1")
    error_row = page.locator("#import-errors tbody tr")
    expect(error_row).to_have_count(1)
    expect(error_row.locator("td").nth(0)).to_have_text("3")
    expect(error_row.locator("td").nth(1)).to_have_text("E-mail")
    expect(error_row.locator("td").nth(2)).to_have_text("“not-an-email” is not a valid email address.")
    expect(page.locator('tr[data-column="Customer Id"] select')).to_have_value("external_id")
    expect(page.locator('tr[data-column="Offers"] select')).to_have_value("topic:offers")
    # The HTML in the name is text in the preview, not markup.
    expect(page.locator("#samples-created").get_by_text(SCRIPT)).to_be_visible()
    expect(page.locator("#samples-updated")).to_contain_text("old@example.com → new@example.com")
    expect(page.locator("#confirm-import")).to_have_count(0)
    expect(page.locator("#confirm-blocked")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "import-preview.png", full_page=True)
    assert not Subscriber.objects.filter(external_id="shop-1").exists()

    # Skip the invalid row, check again, confirm.
    page.locator("#id_skip_invalid").check(force=True)
    page.locator("#recheck").click()
    expect(page.locator("#confirm-import")).to_have_text(re.compile(r"Import 3 rows"))
    page.locator("#confirm-import").click()

    expect(page.locator("#import-done")).to_contain_text("Imported: 2 created, 1 updated, 0 unchanged.")
    expect(page.locator("#import-done")).to_contain_text("1 invalid row was skipped.")
    page.screenshot(path=ARTIFACTS / "import-done.png", full_page=True)
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.COMPLETED
    assert Subscriber.objects.get(external_id="existing").email == "new@example.com"
    assert Segment.objects.get(name="Shop export").members.count() == 3
    consent = ConsentRecord.objects.get(subscriber__external_id="shop-1", field="topic")
    assert consent.source_detail == "shop-export.csv: checkout"

    # The name shows as text in the changelist and on the change page too.
    page.locator("#import-done").get_by_role("link", name="View subscribers").click()
    expect(page.get_by_text(SCRIPT).first).to_be_visible()
    page.get_by_role("link", name="shop-1", exact=True).click()
    expect(page.locator("#id_first_name")).to_have_value(SCRIPT)
    expect(page.get_by_text(f"{SCRIPT} (shop-1)").first).to_be_visible()
    assert dialogs == [], "a script from the CSV ran"
    network.assert_clean()
