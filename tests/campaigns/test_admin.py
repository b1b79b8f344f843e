"""The campaign workspace in the admin: the form, its variants, the buttons, the preview.

Everything goes through the real admin views with the test client: what a marketer
posts, what they see back, what the services recorded (status history, LogEntry,
django-celery-beat objects).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audiences.models import Subscriber
from campaigns.models import Campaign, CampaignStatusChange, TestDevice, Variant
from campaigns.roles import APPROVER, MARKETER, VIEWER
from campaigns.services import campaign_launch, campaign_submit_for_review
from tests.factories import (
    CampaignFactory,
    DeviceFactory,
    SubscriberFactory,
    TestDeviceFactory,
    TopicFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

LANGUAGE_SUFFIXES = [code.replace("-", "_") for code, _name in settings.LANGUAGES]
FUTURE = timezone.now().replace(microsecond=0, second=0) + dt.timedelta(days=30)


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:campaigns_campaign_{name}", args=args)


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def user_in(group: str, **extra: Any) -> User:
    from django.apps import apps

    from campaigns.roles import roles_sync

    roles_sync(apps)  # the groups come from a migration; make sure they are current
    user = UserFactory(**extra)
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def variant_form(index: int, *, name: str, texts: dict[str, tuple[str, str]], **extra: Any) -> dict[str, str]:
    prefix = f"variants-{index}-"
    data = {
        "name": name,
        "weight": "1",
        "image_url": "",
        "click_action": "none",
        "click_url": "",
        "data": "{}",
        "android_channel_id": "",
        "android_icon": "",
        "ios_sound": "",
        "ios_badge": "",
        "web_icon": "",
        "web_actions": "[]",
    }
    for suffix in LANGUAGE_SUFFIXES:
        title, body = texts.get(suffix, ("", ""))
        data[f"title_{suffix}"], data[f"body_{suffix}"] = title, body
    data.update(extra)
    return {prefix + key: value for key, value in data.items()}


def campaign_form(
    *, topic_id: int, variants: list[dict[str, str]], initial_variants: int = 0, **extra: Any
) -> dict[str, str]:
    data = {
        "name": "Spring sale",
        "description": "",
        "topic": str(topic_id),
        "kind": "one_off",
        "default_language": "en",
        "schedule_type": "at",
        "send_at_0": FUTURE.strftime("%Y-%m-%d"),
        "send_at_1": FUTURE.strftime("%H:%M:%S"),
        "local_date": "",
        "local_time": "",
        "late_policy": "next_day",
        "fallback_timezone": "UTC",
        "schedule_timezone": "UTC",
        "weekdays": "",
        "cron_expression": "",
        "ends_at_0": "",
        "ends_at_1": "",
        "ab_mode": "split",
        "control_percent": "10",
        "ab_test_percent": "20",
        "ab_window_hours": "4",
        "ab_metric": "click",
        "throttle_per_minute": "",
        "ttl_seconds": "86400",
        "priority": "normal",
        "quiet_hours_policy": "defer",
        "cap_policy": "defer",
        "conversion_event": "purchase",
        "conversion_window_hours": "72",
        "variants-TOTAL_FORMS": str(len(variants)),
        "variants-INITIAL_FORMS": str(initial_variants),
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        "status_changes-TOTAL_FORMS": "0",
        "status_changes-INITIAL_FORMS": "0",
        "status_changes-MIN_NUM_FORMS": "0",
        "status_changes-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for form in variants:
        data.update(form)
    data.update({key: str(value) for key, value in extra.items()})
    return data


THREE_LANGUAGES_A = {
    "en": ("Hi {{ subscriber.first_name|default:'there' }}", "Spring sale: 20% off."),
    "de": ("Hallo {{ subscriber.first_name|default:'du' }}", "Frühlingsangebot: 20 % Rabatt."),
    "ar": ("مرحبا {{ subscriber.first_name|default:'صديقي' }}", "تخفيضات الربيع: خصم 20٪."),
}
THREE_LANGUAGES_B = {
    "en": ("Spring is here", "Everything 20% off until Sunday."),
    "de": ("Der Frühling ist da", "Alles 20 % günstiger bis Sonntag."),
    "ar": ("وصل الربيع", "كل شيء بخصم 20٪ حتى الأحد."),
}


def reachable(language: str = "en", **extra: Any) -> Subscriber:
    subscriber = SubscriberFactory(language=language, **extra)
    DeviceFactory(subscriber=subscriber)
    return subscriber


# -- pages render ---------------------------------------------------------------------


def test_changelist_add_and_change_pages_render(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory(name="Visible")
    VariantFactory(campaign=campaign)
    archived = CampaignFactory(name="Old one", archived_at=timezone.now())

    changelist = admin_client_logged_in.get(url("changelist"))
    assert changelist.status_code == 200
    shown = [c.pk for c in changelist.context["cl"].result_list]
    assert campaign.pk in shown and archived.pk not in shown  # archived are hidden by default
    everything = admin_client_logged_in.get(url("changelist") + "?archived=all")
    assert archived.pk in [c.pk for c in everything.context["cl"].result_list]

    add = admin_client_logged_in.get(url("add"))
    assert add.status_code == 200
    html = add.content.decode()
    for section in ("Message basics", "Audience", "Schedule", "A/B test", "Delivery options", "Conversion"):
        assert section in html
    assert 'name="variants-0-title_de"' in html and 'name="variants-1-title_ar"' in html
    assert "/static/vendor/jquery-ui/jquery-ui.min.js" in html and "campaigns/variant_tabs.js" in html

    change = admin_client_logged_in.get(url("change", campaign.pk))
    assert change.status_code == 200
    assert 'data-campaign-action="launch"' in change.content.decode()


def test_changelist_has_no_n_plus_one(
    admin_client_logged_in: Client, django_assert_max_num_queries: Any
) -> None:
    for _ in range(15):
        VariantFactory(campaign=CampaignFactory(topic=TopicFactory(slug="offers")))
    with django_assert_max_num_queries(10):
        assert admin_client_logged_in.get(url("changelist")).status_code == 200


# -- creating through the form ----------------------------------------------------------


def test_campaign_with_two_variants_in_three_languages_is_created(
    admin_client_logged_in: Client, superuser: User
) -> None:
    topic = TopicFactory()
    data = campaign_form(
        topic_id=topic.pk,
        variants=[
            variant_form(
                0,
                name="A",
                texts=THREE_LANGUAGES_A,
                click_action="url",
                click_url="https://shop.example/spring",
            ),
            variant_form(
                1, name="B", texts=THREE_LANGUAGES_B, web_actions='[{"action": "buy", "title": "Buy"}]'
            ),
        ],
    )
    response = admin_client_logged_in.post(url("add"), data)
    assert response.status_code == 302, _errors(response)

    campaign = Campaign.objects.get(name="Spring sale")
    assert (campaign.status, campaign.created_by, campaign.send_at) == ("draft", superuser, FUTURE)
    variants = {v.name: v for v in campaign.variants.all()}
    assert set(variants) == {"A", "B"}
    assert variants["A"].title_de == THREE_LANGUAGES_A["de"][0]
    assert variants["B"].body_ar == THREE_LANGUAGES_B["ar"][1]
    assert variants["B"].title_fr in (None, "")
    assert variants["B"].web_actions == [{"action": "buy", "title": "Buy"}]
    assert LogEntry.objects.filter(object_id=str(campaign.pk), action_flag=1).exists()


def _errors(response: Any) -> Any:
    if not getattr(response, "context", None) or "adminform" not in response.context:
        return response.status_code
    return (
        response.context["adminform"].form.errors,
        [formset.formset.errors for formset in response.context["inline_admin_formsets"]],
        [formset.formset.non_form_errors() for formset in response.context["inline_admin_formsets"]],
    )


def test_invalid_template_in_german_title_is_refused_on_that_field(admin_client_logged_in: Client) -> None:
    topic = TopicFactory()
    broken = {**THREE_LANGUAGES_A, "de": ("Hallo {% url 'admin:index' %}", "Frühlingsangebot.")}
    data = campaign_form(topic_id=topic.pk, variants=[variant_form(0, name="A", texts=broken)])
    response = admin_client_logged_in.post(url("add"), data)

    assert response.status_code == 200
    variant_errors = response.context["inline_admin_formsets"][0].formset.errors[0]
    assert set(variant_errors) == {"title_de"}, variant_errors
    assert not Campaign.objects.exists()
    html = response.content.decode()
    assert "url" in " ".join(variant_errors["title_de"])
    assert html.count("errorlist") >= 1


def test_a_language_needs_title_and_body(admin_client_logged_in: Client) -> None:
    topic = TopicFactory()
    data = campaign_form(
        topic_id=topic.pk,
        variants=[variant_form(0, name="A", texts={"en": ("Hello", "Body"), "fr": ("Bonjour", "")})],
    )
    response = admin_client_logged_in.post(url("add"), data)
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors[0]
    assert list(errors) == ["body_fr"] and "French" in errors["body_fr"][0]


def test_schedule_type_at_needs_a_time(admin_client_logged_in: Client) -> None:
    data = campaign_form(
        topic_id=TopicFactory().pk,
        variants=[variant_form(0, name="A", texts=THREE_LANGUAGES_A)],
        send_at_0="",
        send_at_1="",
    )
    response = admin_client_logged_in.post(url("add"), data)
    assert response.status_code == 200
    assert "send_at" in response.context["adminform"].form.errors


def test_locked_campaign_is_read_only_but_a_scheduled_one_may_move_its_schedule(
    admin_client_logged_in: Client, superuser: User
) -> None:
    campaign = CampaignFactory(schedule_type="at", send_at=FUTURE)
    variant = VariantFactory(campaign=campaign)
    campaign = campaign_launch(campaign=campaign, actor=superuser)
    assert campaign.status == "scheduled" and campaign.periodic_task is not None

    page = admin_client_logged_in.get(url("change", campaign.pk))
    form = page.context["adminform"].form
    assert "send_at" in form.fields and "schedule_type" in form.fields
    assert "name" not in form.fields and "include_segments" not in form.fields
    assert not page.context["inline_admin_formsets"][0].has_change_permission

    later = FUTURE + dt.timedelta(days=1)
    data = campaign_form(
        topic_id=campaign.topic_id,
        variants=[],
        send_at_0=later.strftime("%Y-%m-%d"),
        send_at_1=later.strftime("%H:%M:%S"),
        name="Renamed (ignored)",
    )
    data["variants-TOTAL_FORMS"] = data["variants-INITIAL_FORMS"] = "0"
    response = admin_client_logged_in.post(url("change", campaign.pk), data)
    assert response.status_code == 302, _errors(response)
    campaign.refresh_from_db()
    assert campaign.send_at == later and campaign.name != "Renamed (ignored)"
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.clocked is not None and task.clocked.clocked_time == later  # campaign_save synced beat
    assert Variant.objects.get(pk=variant.pk).title_en == variant.title_en


def test_scheduled_campaign_refuses_a_past_time_on_the_form(
    admin_client_logged_in: Client, superuser: User
) -> None:
    campaign = CampaignFactory(schedule_type="at", send_at=FUTURE)
    VariantFactory(campaign=campaign)
    campaign_launch(campaign=campaign, actor=superuser)
    past = timezone.now() - dt.timedelta(days=2)
    data = campaign_form(
        topic_id=campaign.topic_id,
        variants=[],
        send_at_0=past.strftime("%Y-%m-%d"),
        send_at_1=past.strftime("%H:%M:%S"),
    )
    response = admin_client_logged_in.post(url("change", campaign.pk), data)
    assert response.status_code == 200
    assert "in the past" in str(response.context["adminform"].form.non_field_errors())


# -- the buttons -------------------------------------------------------------------------


def _ready(**kwargs: Any) -> Campaign:
    campaign = CampaignFactory(schedule_type="at", send_at=FUTURE, **kwargs)
    VariantFactory(campaign=campaign, name="A")
    return campaign


def _in_review(actor: User) -> Campaign:
    return campaign_submit_for_review(campaign=_ready(), actor=actor)


def _scheduled(actor: User) -> Campaign:
    return campaign_launch(campaign=_ready(), actor=actor)


def _paused(actor: User) -> Campaign:
    from campaigns.services import campaign_pause

    return campaign_pause(campaign=_scheduled(actor), actor=actor)


@pytest.mark.parametrize(
    ("make", "key", "expected", "log"),
    [
        (lambda u: _ready(), "submit", "in_review", "Submitted for review."),
        (_in_review, "approve", "approved", "Approved."),
        (_in_review, "draft", "draft", "Returned to draft."),
        (lambda u: _ready(), "launch", "scheduled", "Launched (scheduled)."),
        (_scheduled, "pause", "paused", "Paused."),
        (_paused, "resume", "scheduled", "Resumed."),
    ],
    ids=["submit", "approve", "back-to-draft", "launch", "pause", "resume"],
)
def test_each_transition_button_calls_the_service_and_writes_history(
    admin_client_logged_in: Client, superuser: User, make: Any, key: str, expected: str, log: str
) -> None:
    campaign = make(superuser)
    page = admin_client_logged_in.get(url("change", campaign.pk))
    assert f'data-campaign-action="{key}"' in page.content.decode()

    response = admin_client_logged_in.post(url("transition", campaign.pk, key))
    assert response.status_code == 302 and response["Location"] == url("change", campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == expected
    last = CampaignStatusChange.objects.filter(campaign=campaign).first()
    assert last is not None and (last.to_status, last.actor) == (expected, superuser)
    entry = LogEntry.objects.filter(object_id=str(campaign.pk), action_flag=2).latest("action_time")
    assert entry.change_message == log and entry.user == superuser
    assert any(campaign.name in text for text in texts(response))


def test_transitions_are_post_only(admin_client_logged_in: Client) -> None:
    campaign = _ready()
    assert admin_client_logged_in.get(url("transition", campaign.pk, "launch")).status_code == 405
    assert admin_client_logged_in.get(url("duplicate", campaign.pk)).status_code == 405
    assert admin_client_logged_in.get(url("archive", campaign.pk)).status_code == 405
    assert admin_client_logged_in.post(url("transition", campaign.pk, "explode")).status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_launch_refused_lists_every_problem(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory(schedule_type="at", send_at=FUTURE, ab_mode="split")  # no variants
    response = admin_client_logged_in.post(url("transition", campaign.pk, "launch"))
    assert response.status_code == 302
    shown = texts(response)
    assert any("cannot move on yet" in text for text in shown)
    assert "Add at least one variant (the message to send)." in shown
    assert any("A/B test needs at least two variants" in text for text in shown)
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    assert not LogEntry.objects.filter(object_id=str(campaign.pk)).exists()


def test_a_state_error_is_a_message_not_a_500(admin_client_logged_in: Client) -> None:
    campaign = _ready()
    # Someone else launched it meanwhile: "resume" no longer applies.
    response = admin_client_logged_in.post(url("transition", campaign.pk, "resume"))
    assert response.status_code == 302
    assert any("is draft now: “Resume” no longer applies." in text for text in texts(response))
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    # The service's own refusal (the state machine) is a message too.
    campaign_submit_for_review(campaign=campaign, actor=None)
    Campaign.objects.filter(pk=campaign.pk).update(status="completed")
    response = admin_client_logged_in.post(url("cancel", campaign.pk), {"post": "yes"})
    assert response.status_code == 302
    assert any("cannot become cancelled" in text for text in texts(response))


def test_cancel_asks_first_then_cancels(admin_client_logged_in: Client, superuser: User) -> None:
    campaign = _scheduled(superuser)
    confirm = admin_client_logged_in.get(url("cancel", campaign.pk))
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"

    response = admin_client_logged_in.post(url("cancel", campaign.pk), {"post": "yes"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "cancelled"
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert task.enabled is False
    assert LogEntry.objects.filter(object_id=str(campaign.pk), change_message="Cancelled.").exists()


def test_duplicate_button_makes_a_draft_copy_with_its_variants(
    admin_client_logged_in: Client, superuser: User
) -> None:
    campaign = _scheduled(superuser)
    VariantFactory(campaign=campaign, name="B", title_de="Hallo")
    response = admin_client_logged_in.post(url("duplicate", campaign.pk))
    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response["Location"] == url("change", copy.pk)
    assert (copy.status, copy.name, copy.created_by) == ("draft", f"{campaign.name} (copy)", superuser)
    assert sorted(copy.variants.values_list("name", "title_de")) == [("A", None), ("B", "Hallo")] or sorted(
        copy.variants.values_list("name", flat=True)
    ) == ["A", "B"]
    assert LogEntry.objects.filter(object_id=str(copy.pk), action_flag=1).exists()
    assert LogEntry.objects.filter(
        object_id=str(campaign.pk), change_message__startswith="Duplicated as"
    ).exists()


def test_archive_button_and_refusal(admin_client_logged_in: Client, superuser: User) -> None:
    draft = _ready()
    response = admin_client_logged_in.post(url("archive", draft.pk))
    assert response["Location"] == url("changelist")
    draft.refresh_from_db()
    assert draft.archived_at is not None
    assert LogEntry.objects.filter(object_id=str(draft.pk), change_message="Archived.").exists()

    scheduled = _scheduled(superuser)
    response = admin_client_logged_in.post(url("archive", scheduled.pk))
    assert response["Location"] == url("change", scheduled.pk)
    assert any("cancel it or let it complete" in text for text in texts(response))


def test_changelist_actions_duplicate_and_archive(admin_client_logged_in: Client) -> None:
    first, second = _ready(name="First"), _ready(name="Second")
    admin_client_logged_in.post(
        url("changelist"), {"action": "duplicate_selected", "_selected_action": [first.pk, second.pk]}
    )
    assert set(Campaign.objects.values_list("name", flat=True)) == {
        "First",
        "Second",
        "First (copy)",
        "Second (copy)",
    }
    admin_client_logged_in.post(
        url("changelist"), {"action": "archive_selected", "_selected_action": [first.pk]}
    )
    first.refresh_from_db()
    assert first.archived_at is not None


def test_viewer_cannot_use_the_buttons(client: Client) -> None:
    viewer = user_in(VIEWER)
    client.force_login(viewer)
    campaign = _ready()
    page = client.get(url("change", campaign.pk))
    assert page.status_code == 200
    assert 'data-campaign-action="launch"' not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    for key in ("submit", "launch", "approve", "pause"):
        assert client.post(url("transition", campaign.pk, key)).status_code == 403
    assert client.post(url("cancel", campaign.pk), {"post": "yes"}).status_code == 403
    assert client.get(url("cancel", campaign.pk)).status_code == 403
    assert client.post(url("duplicate", campaign.pk)).status_code == 403
    assert client.post(url("archive", campaign.pk)).status_code == 403
    assert client.post(url("send_test", campaign.pk)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == "draft" and Campaign.objects.count() == 1
    assert client.get(url("preview", campaign.pk)).status_code == 200  # looking is fine


def test_only_an_approver_sees_and_may_use_approve(client: Client) -> None:
    marketer = user_in(MARKETER)
    campaign = campaign_submit_for_review(campaign=_ready(), actor=marketer)
    client.force_login(marketer)
    assert 'data-campaign-action="approve"' not in client.get(url("change", campaign.pk)).content.decode()
    assert client.post(url("transition", campaign.pk, "approve")).status_code == 403

    approver = user_in(APPROVER)
    client.force_login(approver)
    assert 'data-campaign-action="approve"' in client.get(url("change", campaign.pk)).content.decode()
    client.post(url("transition", campaign.pk, "approve"))
    campaign.refresh_from_db()
    assert (campaign.status, campaign.approved_by) == ("approved", approver)


# -- preview ------------------------------------------------------------------------------


def _campaign_in_three_languages() -> Campaign:
    campaign = CampaignFactory(name="Spring", default_language="en")
    VariantFactory(
        campaign=campaign,
        name="A",
        title_en="Hi {{ subscriber.first_name|default:'there' }}",
        body_en="Spring sale in {{ subscriber.city|default:'your city' }}.",
        title_de="Hallo {{ subscriber.first_name|default:'du' }}",
        body_de="Frühlingsangebote in {{ subscriber.city|default:'deiner Stadt' }}.",
        title_ar="مرحبا {{ subscriber.first_name|default:'صديقي' }}",
        body_ar="تخفيضات الربيع",
        image_url="https://cdn.shop.example/spring.png",
        click_url="https://shop.example/spring",
        web_actions=[{"action": "buy", "title": "Buy now"}],
        ios_badge=3,
    )
    return campaign


def test_preview_shows_three_mockups_for_a_sample_subscriber(admin_client_logged_in: Client) -> None:
    campaign = _campaign_in_three_languages()
    reachable("en", first_name="Grace", city="Paris", external_id="grace")
    response = admin_client_logged_in.get(url("preview", campaign.pk))
    assert response.status_code == 200
    html = response.content.decode()
    for mock in ("mock-android", "mock-ios", "mock-web"):
        block = re.search(rf'id="{mock}"[^>]*>(.*?)</figure>', html, re.S)
        assert block, mock
        assert "Hi Grace" in block.group(1) and "Spring sale in Paris." in block.group(1)
        assert 'src="https://cdn.shop.example/spring.png"' in block.group(1)
    assert re.search(r'id="mock-android" lang="en" dir="ltr"', html)
    assert 'data-mock-action="buy">Buy now<' in html
    assert "data-mock-badge>3<" in html
    assert "shop.example" in html  # web origin and click target
    assert "Nothing would be sent" not in html


def test_preview_in_arabic_is_right_to_left(admin_client_logged_in: Client) -> None:
    campaign = _campaign_in_three_languages()
    reachable("ar", first_name="Layla", external_id="layla")
    response = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=layla")
    html = response.content.decode()
    for mock in ("mock-android", "mock-ios", "mock-web"):
        assert re.search(rf'id="{mock}" lang="ar" dir="rtl"', html), mock
    assert "مرحبا Layla" in html
    # The German tab, for the same person: left to right again.
    german = admin_client_logged_in.get(
        url("preview", campaign.pk) + "?subscriber=layla&lang=de"
    ).content.decode()
    assert re.search(r'id="mock-ios" lang="de" dir="ltr"', german) and "Hallo Layla" in german


def test_preview_notes_a_fallback_language(admin_client_logged_in: Client) -> None:
    campaign = _campaign_in_three_languages()
    reachable("fr", first_name="Amélie", external_id="amelie")
    html = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=amelie").content.decode()
    assert "speaks French; this variant has no French text, so they get English (fallback)." in html
    assert "Hi Amélie" in html and re.search(r'id="mock-web" lang="en" dir="ltr"', html)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda s: Subscriber.objects.filter(pk=s.pk).update(push_opt_in=False), "opted out of push"),
        (lambda s: s.devices.all().delete(), "no active device"),
    ],
    ids=["opted-out", "no-device"],
)
def test_preview_says_why_nothing_would_be_sent(
    admin_client_logged_in: Client, setup: Any, reason: str
) -> None:
    campaign = _campaign_in_three_languages()
    subscriber = reachable("en", external_id="who")
    setup(subscriber)
    html = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=who").content.decode()
    assert "Nothing would be sent:" in html and reason in html


def test_preview_says_when_the_message_renders_empty(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory()
    VariantFactory(campaign=campaign, title_en="{{ subscriber.first_name }}", body_en="{{ subscriber.city }}")
    reachable("en", first_name="", city="", external_id="blank")
    html = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=blank").content.decode()
    assert "Nothing would be sent:" in html and "renders empty" in html
    assert 'id="mock-android"' not in html


def test_preview_escapes_what_marketers_and_subscribers_wrote(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory(name="<b>Bold</b> campaign")
    VariantFactory(
        campaign=campaign, title_en="Hi {{ subscriber.first_name }}", body_en="<img src=x onerror=alert(1)>"
    )
    reachable("en", first_name="<script>alert(1)</script>", external_id="x")
    html = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=x").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "<b>Bold</b>" not in html


def test_preview_of_an_unknown_external_id_says_so(admin_client_logged_in: Client) -> None:
    campaign = _campaign_in_three_languages()
    html = admin_client_logged_in.get(url("preview", campaign.pk) + "?subscriber=nobody").content.decode()
    assert "No subscriber has the external id “nobody”." in html
    assert "every variable at its default" in html and "Hi there" in html


def test_coverage_sentences_and_missing_translations(admin_client_logged_in: Client) -> None:
    campaign = CampaignFactory(default_language="en")
    VariantFactory(campaign=campaign, name="A", title_de="Hallo", body_de="Angebote")
    VariantFactory(campaign=campaign, name="B")  # English only
    for _ in range(3):
        reachable("de")
    reachable("en")
    SubscriberFactory(language="fr")  # no device: not in the reachable audience
    for page in (url("preview", campaign.pk), url("change", campaign.pk)):
        html = admin_client_logged_in.get(page).content.decode()
        assert "3 subscribers will get English instead of German" in html
        assert "1 subscriber will get English" in html
        assert "Variant B has no German translation: subscribers who speak it get English instead." in html


# -- test send ----------------------------------------------------------------------------


def test_send_test_without_a_test_device_is_a_clear_error(admin_client_logged_in: Client) -> None:
    campaign = _ready()
    response = admin_client_logged_in.post(url("send_test", campaign.pk), {"next": "change"})
    assert response.status_code == 302
    assert any("You have no test devices" in text for text in texts(response))


def test_send_test_queues_to_my_devices(admin_client_logged_in: Client, superuser: User) -> None:
    from delivery.models import Run

    campaign = _campaign_in_three_languages()
    variant = campaign.variants.get()
    TestDeviceFactory(user=superuser)
    TestDeviceFactory(user=superuser, device=DeviceFactory(platform="ios"))
    TestDeviceFactory()  # someone else's
    response = admin_client_logged_in.post(
        url("send_test", campaign.pk), {"variant": variant.pk, "language": "ar", "next": "preview"}
    )
    assert response.status_code == 302 and response["Location"].startswith(url("preview", campaign.pk))
    assert "Test queued to 2 devices." in texts(response)
    run = Run.objects.get(campaign=campaign, is_test=True)
    assert set(run.deliveries.values_list("language", flat=True)) == {"ar"}
    assert LogEntry.objects.filter(
        object_id=str(campaign.pk), change_message="Sent a test to my devices."
    ).exists()


def test_send_test_needs_the_permission(client: Client) -> None:
    user = UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_campaign", "change_campaign"]))
    client.force_login(user)
    campaign = _ready()
    assert client.post(url("send_test", campaign.pk)).status_code == 403


# -- test devices and the status history ------------------------------------------------------


def test_test_devices_are_personal(client: Client) -> None:
    marketer = user_in(MARKETER)
    mine = TestDeviceFactory(user=marketer, label="Mine")
    TestDeviceFactory(label="Theirs")
    client.force_login(marketer)
    listing = client.get(reverse("admin:campaigns_testdevice_changelist"))
    assert [d.label for d in listing.context["cl"].result_list] == ["Mine"]

    device = DeviceFactory()
    response = client.post(reverse("admin:campaigns_testdevice_add"), {"device": device.pk, "label": "Pixel"})
    assert response.status_code == 302
    assert TestDevice.objects.get(label="Pixel").user == marketer
    again = client.post(reverse("admin:campaigns_testdevice_add"), {"device": mine.device_id, "label": "Dup"})
    assert again.status_code == 200 and "already one of your test devices" in again.content.decode()


def test_status_history_is_read_only(admin_client_logged_in: Client, superuser: User) -> None:
    campaign = _scheduled(superuser)
    change = CampaignStatusChange.objects.get(campaign=campaign)
    page = admin_client_logged_in.get(
        reverse("admin:campaigns_campaignstatuschange_change", args=[change.pk])
    )
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client_logged_in.get(reverse("admin:campaigns_campaignstatuschange_add")).status_code == 403
    campaign_page = admin_client_logged_in.get(url("change", campaign.pk)).content.decode()
    assert "status history" in campaign_page.lower()


def test_campaign_page_links_its_runs(admin_client_logged_in: Client) -> None:
    from delivery.models import Run

    campaign = VariantFactory().campaign
    at = timezone.now().replace(microsecond=0)
    run = Run.objects.create(campaign=campaign, occurrence=at, status=Run.Status.SENDING)
    Run.objects.create(campaign=campaign, occurrence=at, is_test=True)  # test sends are not listed
    response = admin_client_logged_in.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count(reverse("admin:delivery_run_change", args=[run.pk])) == 1
    assert f"{at:%Y-%m-%d %H:%M} UTC</a> · Sending" in page
