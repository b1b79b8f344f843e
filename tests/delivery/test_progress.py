"""A run's progress (counts, rate, ETA, results), retry failed / resume, and the Run page."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audiences.models import Subscriber
from campaigns.models import Campaign, Variant
from campaigns.roles import MARKETER, VIEWER, roles_sync
from delivery.models import Delivery, Run
from delivery.recovery import RunStateError, run_resume, run_retry_failed
from delivery.selectors import run_limit_per_minute, run_progress
from tests.factories import CampaignFactory, DeviceFactory, SubscriberFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

D = Delivery.Status
NOW = timezone.now().replace(microsecond=0)
MINUTE = dt.timedelta(minutes=1)


def make_run(campaign: Campaign | None = None, **fields: Any) -> Run:
    fields.setdefault("status", Run.Status.SENDING)
    fields.setdefault("occurrence", NOW + dt.timedelta(seconds=Run.objects.count()))
    return Run.objects.create(campaign=campaign or CampaignFactory(), **fields)


def add_rows(
    run: Run, count: int = 1, *, subscriber: Subscriber | None = None, **fields: Any
) -> list[Delivery]:
    """Ledger rows as the planner and the sender leave them (one device each)."""
    fields.setdefault("status", D.QUEUED)
    fields.setdefault("scheduled_for", NOW - MINUTE)
    if fields["status"] == D.SENT:
        fields.setdefault("sent_at", NOW - dt.timedelta(minutes=30))
    rows = []
    for _ in range(count):
        device = DeviceFactory(subscriber=subscriber or SubscriberFactory())
        rows.append(Delivery(run=run, device=device, subscriber=device.subscriber, **fields))
    return Delivery.objects.bulk_create(rows)


# -- progress -------------------------------------------------------------------------------


def test_counts_by_status_and_reason_in_one_aggregate(django_assert_num_queries: Any) -> None:
    run = make_run()
    add_rows(run, 3, status=D.QUEUED)
    add_rows(run, 1, status=D.SENDING, claimed_at=NOW)
    add_rows(run, 4, status=D.SENT)
    add_rows(run, 2, status=D.FAILED, reason="unavailable")
    add_rows(run, 1, status=D.FAILED, reason="internal")
    add_rows(run, 1, status=D.INVALID_TOKEN, reason="unregistered")
    add_rows(run, 2, status=D.SUPPRESSED, reason="opt_out")
    add_rows(run, 3, status=D.SUPPRESSED, reason="quiet_hours")
    add_rows(make_run(), 5, status=D.SENT)  # another run

    with django_assert_num_queries(2):  # the run, then one aggregate
        progress = run_progress(run_id=run.pk, now=NOW)

    assert progress is not None
    assert progress.counts == {
        "queued": 3,
        "sending": 1,
        "sent": 4,
        "failed": 3,
        "suppressed": 5,
        "invalid_token": 1,
    }
    assert progress.suppressed_by_reason == {"quiet_hours": 3, "opt_out": 2}
    assert progress.failed_by_reason == {"unavailable": 2, "internal": 1}
    assert (progress.total, progress.remaining, progress.done, progress.done_percent) == (17, 4, 13, 76)
    assert run_progress(run_id=987654) is None


def test_the_eta_divides_what_is_left_by_the_current_rate_within_the_throttle() -> None:
    run = make_run(CampaignFactory(throttle_per_minute=10))
    add_rows(run, 30, status=D.QUEUED)
    add_rows(run, 5, status=D.SENT, sent_at=NOW - dt.timedelta(seconds=20))  # the last minute
    add_rows(run, 50, status=D.SENT, sent_at=NOW - dt.timedelta(minutes=5))  # earlier

    progress = run_progress(run_id=run.pk, now=NOW)

    assert progress is not None
    assert (progress.rate_per_minute, progress.limit_per_minute) == (5, 10.0)
    assert progress.eta_seconds == 30 / 5 * 60
    assert progress.expected_finish_at == NOW + dt.timedelta(minutes=6)
    # Faster than the throttle (a burst): the throttle is what it will keep to.
    add_rows(run, 20, status=D.SENT, sent_at=NOW - dt.timedelta(seconds=5))
    progress = run_progress(run_id=run.pk, now=NOW)
    assert progress is not None and progress.eta_seconds == 30 / 10 * 60


def test_before_sending_starts_the_finish_comes_from_the_throttle() -> None:
    starts = NOW + dt.timedelta(hours=2)
    run = make_run(CampaignFactory(throttle_per_minute=100), status=Run.Status.PENDING)
    add_rows(run, 1_000 // 100, status=D.QUEUED, scheduled_for=starts)
    progress = run_progress(run_id=run.pk, now=NOW)
    assert progress is not None
    assert progress.eta_seconds is None  # nothing measured yet
    assert progress.expected_finish_at == starts + dt.timedelta(minutes=10 / 100)
    assert progress.next_due_at == starts

    unthrottled = make_run(CampaignFactory(throttle_per_minute=None))
    add_rows(unthrottled, 6, status=D.QUEUED, scheduled_for=NOW - MINUTE)
    progress = run_progress(run_id=unthrottled.pk, now=NOW)
    assert progress is not None
    assert progress.limit_per_minute == run_limit_per_minute(throttle_per_minute=None)
    assert progress.expected_finish_at == NOW + dt.timedelta(minutes=6 / progress.limit_per_minute)


def test_rows_deferred_to_later_push_the_finish_out() -> None:
    run = make_run(CampaignFactory(throttle_per_minute=1_000))
    deferred_to = NOW + dt.timedelta(hours=9)  # after quiet hours
    add_rows(run, 2, status=D.QUEUED)
    add_rows(run, 1, status=D.QUEUED, scheduled_for=deferred_to)
    add_rows(run, 3, status=D.SENT, sent_at=NOW - dt.timedelta(seconds=10))
    progress = run_progress(run_id=run.pk, now=NOW)
    assert progress is not None
    assert progress.expected_finish_at == deferred_to
    assert progress.eta_seconds == (deferred_to - NOW).total_seconds()


def test_a_finished_or_paused_run_promises_nothing_more() -> None:
    done = make_run(status=Run.Status.COMPLETED, finished_at=NOW - MINUTE)
    add_rows(done, 2, status=D.SENT)
    progress = run_progress(run_id=done.pk, now=NOW)
    assert progress is not None
    assert (progress.eta_seconds, progress.expected_finish_at, progress.is_live) == (0.0, NOW - MINUTE, False)

    paused = make_run(status=Run.Status.PAUSED, error="INVALID_ARGUMENT: the payload is too big")
    add_rows(paused, 2, status=D.QUEUED)
    progress = run_progress(run_id=paused.pk, now=NOW)
    assert progress is not None
    assert (progress.eta_seconds, progress.expected_finish_at) == (None, None)
    assert progress.error.startswith("INVALID_ARGUMENT")


def test_results_per_variant_and_for_the_control_group() -> None:
    campaign = CampaignFactory()
    a = VariantFactory(campaign=campaign, name="A")
    b = VariantFactory(campaign=campaign, name="B")
    run = make_run(campaign, status=Run.Status.COMPLETED, finished_at=NOW)
    add_rows(run, 6, variant=a, status=D.SENT, opened_at=NOW, clicked_at=NOW)
    add_rows(run, 2, variant=a, status=D.SENT, opened_at=NOW, converted_at=NOW)
    add_rows(run, 2, variant=a, status=D.SENT)
    add_rows(run, 2, variant=a, status=D.SUPPRESSED, reason="opt_out")  # not in the rates' base
    add_rows(run, 4, variant=b, status=D.SENT, converted_at=NOW)
    add_rows(run, 5, is_control=True, status=D.SUPPRESSED, reason="control")
    add_rows(run, 1, is_control=True, status=D.SUPPRESSED, reason="control", converted_at=NOW)

    progress = run_progress(run_id=run.pk, now=NOW)

    assert progress is not None
    arms = {arm.label: arm for arm in progress.variants}
    assert list(arms) == ["A", "B", "Control"]
    a_arm = arms["A"]
    assert (a_arm.deliveries, a_arm.sent, a_arm.opened, a_arm.clicked, a_arm.converted) == (12, 10, 8, 6, 2)
    assert (arms["A"].open_rate, arms["A"].click_rate, arms["A"].conversion_rate) == (0.8, 0.6, 0.2)
    assert (arms["B"].open_rate, arms["B"].conversion_rate) == (0.0, 1.0)
    control = arms["Control"]
    assert (control.key, control.is_control, control.deliveries, control.converted) == ("control", True, 6, 1)
    assert (control.open_rate, control.conversion_rate) == (None, 1 / 6)
    data = progress.as_dict()
    assert data["variants"][2]["conversion_rate"] == 1 / 6  # type: ignore[index]
    assert data["counts"] == progress.counts


# -- retry failed and resume ----------------------------------------------------------------


def test_retry_failed_requeues_only_the_failed_rows() -> None:
    user = UserFactory()
    run = make_run(status=Run.Status.PARTIALLY_FAILED, finished_at=NOW - MINUTE)
    failed = add_rows(
        run, 2, status=D.FAILED, reason="unavailable", error="503", attempts=5, claimed_at=NOW - MINUTE
    )
    others = [
        *add_rows(run, 1, status=D.INVALID_TOKEN, reason="unregistered", error="gone", attempts=1),
        *add_rows(run, 1, status=D.SENT, attempts=1),
        *add_rows(run, 1, status=D.SUPPRESSED, reason="opt_out"),
    ]
    other_run_failed = add_rows(make_run(status=Run.Status.PARTIALLY_FAILED), 1, status=D.FAILED)
    before = {row.pk: Delivery.objects.get(pk=row.pk) for row in [*others, *other_run_failed]}

    assert run_retry_failed(run_id=run.pk, actor=user) == 2

    for row in Delivery.objects.filter(pk__in=[r.pk for r in failed]):
        assert (row.status, row.attempts, row.reason, row.error, row.claimed_at) == (
            D.QUEUED,
            0,
            "",
            "",
            None,
        )
        assert abs(row.scheduled_for - timezone.now()) < MINUTE
    for pk, old in before.items():
        new = Delivery.objects.get(pk=pk)
        assert (new.status, new.reason, new.error, new.attempts) == (
            old.status,
            old.reason,
            old.error,
            old.attempts,
        )
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (Run.Status.SENDING, None)
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.object_id, entry.action_flag) == (user.pk, str(run.pk), CHANGE)
    assert entry.change_message == "Retried 2 failed deliveries."
    # Again: nothing left to retry, nothing changes, no second log line.
    assert run_retry_failed(run_id=run.pk, actor=user) == 0
    assert LogEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "is_test", "message"),
    [
        (Run.Status.PAUSED, False, "Resume it first"),
        (Run.Status.CANCELLED, False, "cannot be retried"),
        (Run.Status.PLANNING, False, "cannot be retried"),
        (Run.Status.PARTIALLY_FAILED, True, "send a new test"),
    ],
)
def test_retry_failed_is_refused_where_it_makes_no_sense(status: str, is_test: bool, message: str) -> None:
    run = make_run(status=status, is_test=is_test)
    add_rows(run, 1, status=D.FAILED)
    with pytest.raises(RunStateError, match=message):
        run_retry_failed(run_id=run.pk, actor=None)
    assert Delivery.objects.get().status == D.FAILED


def test_resume_sends_a_paused_run_again() -> None:
    user = UserFactory()
    run = make_run(status=Run.Status.PAUSED, error="INVALID_ARGUMENT: the title is too long")
    add_rows(run, 3, status=D.QUEUED)
    add_rows(run, 1, status=D.FAILED)

    resumed = run_resume(run_id=run.pk, actor=user)

    run.refresh_from_db()
    assert (resumed.status, run.status, run.error) == (Run.Status.SENDING, Run.Status.SENDING, "")
    assert sorted(Delivery.objects.values_list("status", flat=True)) == [
        "failed",
        "queued",
        "queued",
        "queued",
    ]
    assert LogEntry.objects.get().change_message == "Resumed."
    assert run_resume(run_id=run.pk, actor=user).status == Run.Status.SENDING  # idempotent
    assert LogEntry.objects.count() == 1
    with pytest.raises(RunStateError, match="only a paused run"):
        run_resume(run_id=make_run(status=Run.Status.COMPLETED).pk, actor=user)


# -- the Run page ---------------------------------------------------------------------------


def url(name: str, run: Run) -> str:
    return reverse(f"admin:delivery_run_{name}", args=[run.pk])


def a_run_with_results(variants: int = 2, rows: int = 3) -> Run:
    campaign = CampaignFactory(throttle_per_minute=60, conversion_event="purchase")
    run = make_run(campaign, status=Run.Status.PARTIALLY_FAILED, finished_at=NOW)
    for index in range(variants):
        variant = VariantFactory(campaign=campaign, name=f"V{index}")
        add_rows(run, rows, variant=variant, status=D.SENT, opened_at=NOW)
        add_rows(run, 1, variant=variant, status=D.FAILED, reason="internal")
        add_rows(run, 1, variant=variant, status=D.SUPPRESSED, reason="quiet_hours")
    add_rows(run, rows, is_control=True, status=D.SUPPRESSED, reason="control")
    return run


def member(group: str) -> User:
    roles_sync(apps)  # migration data a flushed or reused test database may have lost
    user = UserFactory(username=group.lower())
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)


def test_the_run_page_shows_progress_results_and_the_retry_button(
    admin_client_logged_in: Client, django_assert_max_num_queries: Any
) -> None:
    run = a_run_with_results()
    with django_assert_max_num_queries(20) as few:
        page = admin_client_logged_in.get(url("change", run))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="run-progress"' in html and f'data-status-url="{url("progress_json", run)}"' in html
    assert re.search(r'data-display="count-failed">\s*2<', html)
    assert re.search(r'data-display="suppressed">control 3 · quiet_hours 2<', html)
    assert 'data-arm="control"' in html and ">V0<" in html and ">V1<" in html
    assert f'href="{url("retry_failed", run)}"' in html
    assert "delivery/run_progress.js" in html and "delivery/run_progress.css" in html
    assert finders.find("delivery/run_progress.js") and finders.find("delivery/run_progress.css")
    section = html[
        html.index('id="run-progress"') : html.index("</section>", html.index('id="run-progress"'))
    ]
    assert "<script" not in section and "style=" not in section  # CSP-friendly: no inline code
    assert 'http-equiv="refresh"' not in html  # a finished run does not reload itself

    bigger = a_run_with_results(variants=4, rows=20)
    with django_assert_max_num_queries(len(few.captured_queries)):  # more rows and arms, no more queries
        assert admin_client_logged_in.get(url("change", bigger)).status_code == 200


def test_a_live_run_refreshes_itself_with_or_without_javascript(admin_client_logged_in: Client) -> None:
    run = make_run(CampaignFactory(throttle_per_minute=30))
    add_rows(run, 4, status=D.QUEUED)
    add_rows(run, 2, status=D.SENT, sent_at=NOW - dt.timedelta(seconds=10))
    html = admin_client_logged_in.get(url("change", run)).content.decode()
    assert 'data-live="true"' in html
    assert re.search(r'<noscript><meta http-equiv="refresh" content="\d+"></noscript>', html)

    status = admin_client_logged_in.get(url("progress_json", run))

    assert status.status_code == 200 and "no-cache" in status["Cache-Control"]
    data = status.json()
    assert data["progress"]["status"] == "sending" and data["progress"]["remaining"] == 4
    assert data["progress"]["rate_per_minute"] == 2
    assert data["display"]["count-queued"] == "4"
    assert data["display"]["limit"] == "30 a minute (campaign throttle)"
    assert data["display"]["eta"] == "2 minutes"  # 4 left at 2 a minute
    # Every text the script may set has its place on the page, and the other way round.
    assert set(re.findall(r'data-display="([^"]+)"', html)) == set(data["display"])


def test_retry_failed_from_the_page_asks_first_and_logs(
    admin_client_logged_in: Client, superuser: User
) -> None:
    run = a_run_with_results()
    confirm = admin_client_logged_in.get(url("retry_failed", run))
    assert confirm.status_code == 200
    assert "Send the 2 failed deliveries of this run again?" in confirm.content.decode()
    assert Delivery.objects.filter(run=run, status=D.FAILED).count() == 2  # asking changes nothing

    done = admin_client_logged_in.post(url("retry_failed", run), {"post": "yes"}, follow=True)

    assert done.redirect_chain[-1][0] == url("change", run)
    assert "2 failed deliveries are queued again" in done.content.decode()
    assert not Delivery.objects.filter(run=run, status=D.FAILED).exists()
    run.refresh_from_db()
    assert run.status == Run.Status.SENDING
    assert LogEntry.objects.get(object_id=str(run.pk)).user_id == superuser.pk
    again = admin_client_logged_in.post(url("retry_failed", run), follow=True)
    assert "no failed deliveries to retry" in again.content.decode()


def test_resume_from_the_page(admin_client_logged_in: Client) -> None:
    run = make_run(status=Run.Status.PAUSED, error="Authentication failed: check FIREBASE_CREDENTIALS")
    add_rows(run, 2, status=D.QUEUED)
    page = admin_client_logged_in.get(url("change", run)).content.decode()
    assert "Authentication failed: check FIREBASE_CREDENTIALS" in page
    assert f'action="{url("resume", run)}"' in page
    assert admin_client_logged_in.get(url("resume", run)).status_code == 405
    response = admin_client_logged_in.post(url("resume", run))
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.status, run.error) == (Run.Status.SENDING, "")


@pytest.mark.parametrize("group", [VIEWER, MARKETER])
def test_without_the_change_permission_the_page_is_read_only(client: Client, group: str) -> None:
    client.force_login(member(group))
    run = a_run_with_results()
    paused = make_run(status=Run.Status.PAUSED, error="payload")

    page = client.get(url("change", run))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="run-progress"' in html and "run-retry-failed" not in html
    assert "run-resume" not in client.get(url("change", paused)).content.decode()
    assert client.get(url("progress_json", run)).status_code == 200  # looking is fine
    assert client.get(url("retry_failed", run)).status_code == 403
    assert client.post(url("retry_failed", run), {"post": "yes"}).status_code == 403
    assert client.post(url("resume", paused)).status_code == 403
    assert Delivery.objects.filter(run=run, status=D.FAILED).count() == 2
    paused.refresh_from_db()
    assert paused.status == Run.Status.PAUSED
    assert not LogEntry.objects.exists()


def test_the_change_permission_alone_allows_the_actions(client: Client) -> None:
    user = UserFactory()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="delivery", codename__in=["view_run", "change_run"]
        )
    )
    client.force_login(user)
    run = a_run_with_results()
    assert "run-retry-failed" in client.get(url("change", run)).content.decode()
    assert client.post(url("retry_failed", run)).status_code == 302
    assert not Delivery.objects.filter(run=run, status=D.FAILED).exists()


def test_unknown_runs_are_404(admin_client_logged_in: Client) -> None:
    for name in ("progress_json", "retry_failed"):
        assert (
            admin_client_logged_in.get(reverse(f"admin:delivery_run_{name}", args=[987654])).status_code
            == 404
        )
    assert admin_client_logged_in.post(reverse("admin:delivery_run_resume", args=[987654])).status_code == 404


def test_variant_names_are_escaped(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory()
    variant = VariantFactory(campaign=campaign, name="<b>x</b>")
    run = make_run(campaign)
    add_rows(run, 1, variant=variant, status=D.SENT)
    html = admin_client_logged_in.get(url("change", run)).content.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert Variant.objects.count() == 1


# -- in the browser: the page follows the run by itself ---------------------------------------


@pytest.mark.browser
def test_the_run_page_updates_itself_in_the_browser(
    live_server: Any, transactional_db: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from delivery import admin as delivery_admin
    from tests.browser.support import ARTIFACTS, CHROMIUM_ARGS, PASSWORD, NetworkLog
    from tests.services import require_chromium

    chromium = require_chromium()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop; see tests/browser
    monkeypatch.setattr(delivery_admin, "PROGRESS_REFRESH_SECONDS", 1)
    User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    campaign = CampaignFactory(throttle_per_minute=120)
    variant = VariantFactory(campaign=campaign, name="A")
    run = make_run(campaign)
    rows = add_rows(run, 4, variant=variant, status=D.QUEUED)
    network = NetworkLog()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=live_server.url, viewport={"width": 1280, "height": 1000})
            page.on("request", network.on_request)
            page.on("response", network.on_response)
            page.on("requestfailed", network.on_request_failed)
            page.on("pageerror", lambda error: network.page_errors.append(str(error)))
            page.goto("/admin/login/")
            page.locator("#id_username").fill("boss")
            page.locator("#id_password").fill(PASSWORD)
            page.locator("#login-form [type=submit]").click()
            page.goto(url("change", run))
            sent = page.locator('#run-progress [data-display="count-sent"]')
            expect(sent).to_have_text("0")
            page.evaluate("window.__samePage = true")

            Delivery.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(
                status=D.SENT, sent_at=timezone.now()
            )

            expect(sent).to_have_text("3", timeout=10_000)  # polled, not reloaded
            expect(page.locator('#run-progress [data-display="rate"]')).to_have_text("3 a minute")
            arm = f"v{variant.pk}"
            expect(page.locator(f'tr[data-arm="{arm}"] [data-display="{arm}-sent"]')).to_have_text("3")
            assert page.evaluate("window.__samePage") is True
            page.screenshot(path=ARTIFACTS / "run-progress.png", full_page=True)

            Run.objects.filter(pk=run.pk).update(
                status=Run.Status.PARTIALLY_FAILED, finished_at=timezone.now()
            )

            expect(page.locator("#run-status")).to_have_text("Partially failed", timeout=10_000)  # reloaded
            assert page.evaluate("window.__samePage") is None
            expect(page.locator("#run-live")).to_have_count(0)
        finally:
            browser.close()
    network.assert_clean()
