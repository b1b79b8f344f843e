"""A campaign's status machine: every transition checked, recorded, and mirrored in beat.

Campaigns are put in each state through the real actions (launch, pause…), never by
writing ``status``; the assertions are what a marketer sees: the status, the history
row with who did it, the problems that stop a launch, and the beat task.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from audiences.services import segment_create_static
from campaigns.models import Campaign, CampaignStatusChange, Variant
from campaigns.roles import APPROVER, MARKETER, VIEWER, roles_sync
from campaigns.services import (
    ALLOWED,
    CampaignStateError,
    CampaignValidationError,
    campaign_approve,
    campaign_archive,
    campaign_cancel,
    campaign_complete,
    campaign_duplicate,
    campaign_launch,
    campaign_mark_running,
    campaign_pause,
    campaign_resume,
    campaign_return_to_draft,
    campaign_submit_for_review,
)
from tests.factories import CampaignFactory, DeviceFactory, SubscriberFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

S = Campaign.Status


@pytest.fixture(autouse=True)
def _roles() -> None:
    # Migration data: a transactional test elsewhere (flush) or a reused test database
    # may have lost the groups; roles_sync is idempotent.
    roles_sync(apps)


def member(group: str) -> User:
    user = UserFactory(username=group.lower())
    user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


@pytest.fixture
def marketer() -> User:
    return member(MARKETER)


@pytest.fixture
def approver() -> User:
    return member(APPROVER)


def send_at() -> dt.datetime:
    return (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)


def ready(**fields: Any) -> Campaign:
    """A campaign that can be launched: one English variant, sent at a time tomorrow."""
    fields = {"schedule_type": Campaign.ScheduleType.AT, "send_at": send_at(), **fields}
    campaign = CampaignFactory(**fields)
    VariantFactory(campaign=campaign, name="A")
    return campaign


def history(campaign: Campaign) -> list[tuple[str, str, int | None]]:
    return list(
        CampaignStatusChange.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("from_status", "to_status", "actor_id")
    )


def reload(campaign: Campaign) -> Campaign:
    return Campaign.objects.get(pk=campaign.pk)


# -- getting a campaign into each state through the real actions ------------------------


def bring_to(state: str, *, marketer: User, approver: User, paused_from: str = S.SCHEDULED) -> Campaign:
    campaign = ready()
    steps: dict[str, list[Callable[[Campaign], Campaign]]] = {
        S.DRAFT: [],
        S.IN_REVIEW: [lambda c: campaign_submit_for_review(campaign=c, actor=marketer)],
        S.APPROVED: [
            lambda c: campaign_submit_for_review(campaign=c, actor=marketer),
            lambda c: campaign_approve(campaign=c, actor=approver),
        ],
        S.SCHEDULED: [lambda c: campaign_launch(campaign=c, actor=marketer)],
        S.RUNNING: [
            lambda c: campaign_launch(campaign=c, actor=marketer),
            lambda c: campaign_mark_running(campaign=c),
        ],
        S.COMPLETED: [
            lambda c: campaign_launch(campaign=c, actor=marketer),
            lambda c: campaign_mark_running(campaign=c),
            lambda c: campaign_complete(campaign=c),
        ],
        S.CANCELLED: [lambda c: campaign_cancel(campaign=c, actor=marketer)],
    }
    steps[S.PAUSED] = [*steps[paused_from], lambda c: campaign_pause(campaign=c, actor=marketer)]
    for step in steps[state]:
        campaign = step(campaign)
    campaign = reload(campaign)
    assert campaign.status == state
    return campaign


def act(to: str, campaign: Campaign, *, marketer: User, approver: User) -> Campaign:
    """Move ``campaign`` to ``to`` with the action a person (or the system) uses for it."""
    actions: dict[str, Callable[[], Campaign]] = {
        S.IN_REVIEW: lambda: campaign_submit_for_review(campaign=campaign, actor=marketer),
        S.APPROVED: lambda: campaign_approve(campaign=campaign, actor=approver),
        S.DRAFT: lambda: campaign_return_to_draft(campaign=campaign, actor=marketer),
        S.SCHEDULED: (
            (lambda: campaign_resume(campaign=campaign, actor=marketer))
            if campaign.status == S.PAUSED
            else (lambda: campaign_launch(campaign=campaign, actor=marketer))
        ),
        S.RUNNING: (
            (lambda: campaign_resume(campaign=campaign, actor=marketer))
            if campaign.status == S.PAUSED
            else (lambda: campaign_mark_running(campaign=campaign))
        ),
        S.PAUSED: lambda: campaign_pause(campaign=campaign, actor=marketer),
        S.CANCELLED: lambda: campaign_cancel(campaign=campaign, actor=marketer),
        S.COMPLETED: lambda: campaign_complete(campaign=campaign),
    }
    return actions[to]()


# Who is recorded: the person for their actions, nobody for the system's.
SYSTEM_TARGETS = {S.RUNNING, S.COMPLETED}
ALLOWED_PAIRS = sorted((source, target) for source, targets in ALLOWED.items() for target in targets)
REFUSED_PAIRS = sorted(
    (source, target)
    for source in ALLOWED
    for target in S.values
    if target != source and target not in ALLOWED[source]
)


def test_the_state_machine_is_the_documented_one() -> None:
    assert set(ALLOWED) == set(S.values)
    assert ALLOWED[S.COMPLETED] == ALLOWED[S.CANCELLED] == set()  # final
    assert S.SCHEDULED not in ALLOWED[S.IN_REVIEW]  # a review ends in an approval first


@pytest.mark.parametrize(("source", "target"), ALLOWED_PAIRS, ids=[f"{a}-to-{b}" for a, b in ALLOWED_PAIRS])
def test_every_allowed_transition_writes_one_history_row_with_its_actor(
    source: str, target: str, marketer: User, approver: User
) -> None:
    paused_from = S.RUNNING if (source, target) == (S.PAUSED, S.RUNNING) else S.SCHEDULED
    campaign = bring_to(source, marketer=marketer, approver=approver, paused_from=paused_from)
    before = history(campaign)

    result = act(target, campaign, marketer=marketer, approver=approver)

    assert result.status == target
    assert reload(campaign).status == target
    actor = (
        None
        if (target in SYSTEM_TARGETS and source != S.PAUSED)
        else (approver if target == S.APPROVED else marketer)
    )
    assert history(campaign) == [*before, (source, target, actor.pk if actor else None)]


@pytest.mark.parametrize(("source", "target"), REFUSED_PAIRS, ids=[f"{a}-to-{b}" for a, b in REFUSED_PAIRS])
def test_every_other_transition_is_refused_and_writes_nothing(
    source: str, target: str, marketer: User, approver: User
) -> None:
    campaign = bring_to(source, marketer=marketer, approver=approver)
    before = history(campaign)
    task_before = list(PeriodicTask.objects.values_list("pk", "enabled"))

    with pytest.raises(CampaignStateError) as refused:
        act(target, campaign, marketer=marketer, approver=approver)

    assert refused.value.message  # a sentence the marketer can act on
    assert reload(campaign).status == source
    assert history(campaign) == before
    assert list(PeriodicTask.objects.values_list("pk", "enabled")) == task_before


@pytest.mark.parametrize("state", [S.DRAFT, S.IN_REVIEW, S.APPROVED, S.SCHEDULED, S.RUNNING, S.PAUSED,
                                   S.COMPLETED, S.CANCELLED])  # fmt: skip
def test_a_transition_to_the_current_state_changes_nothing(
    state: str, marketer: User, approver: User
) -> None:
    campaign = bring_to(state, marketer=marketer, approver=approver)
    before = history(campaign)
    tasks = list(PeriodicTask.objects.values_list("pk", "enabled", "clocked_id", "crontab_id"))
    updated_at = campaign.updated_at

    result = act(state, campaign, marketer=marketer, approver=approver)

    assert result.status == state
    assert history(campaign) == before
    assert reload(campaign).updated_at == updated_at
    assert list(PeriodicTask.objects.values_list("pk", "enabled", "clocked_id", "crontab_id")) == tasks


def test_a_transition_takes_a_bounded_number_of_queries(
    marketer: User, django_assert_max_num_queries: Any
) -> None:
    for i in range(30):  # the audience does not change the cost of a status change
        DeviceFactory(subscriber=SubscriberFactory(external_id=f"q-{i}"))
    campaign = ready()
    # Counts include savepoints; most of a change is django-celery-beat's own
    # bookkeeping (PeriodicTasks.last_update tells beat to reload).
    with django_assert_max_num_queries(31):
        campaign = campaign_launch(campaign=campaign, actor=marketer)
    with django_assert_max_num_queries(20):
        campaign = campaign_pause(campaign=campaign, actor=marketer)
    with django_assert_max_num_queries(3):  # a no-op: one locking read (in a savepoint)
        campaign = campaign_pause(campaign=campaign, actor=marketer)
    with django_assert_max_num_queries(21):
        campaign = campaign_resume(campaign=campaign, actor=marketer)


# -- launching: every reason it is refused is listed ------------------------------------


def _past(campaign: Campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(send_at=timezone.now() - dt.timedelta(hours=2))


PROBLEMS: dict[str, tuple[Callable[[], Campaign], str]] = {
    "no variants": (
        lambda: CampaignFactory(schedule_type=Campaign.ScheduleType.AT, send_at=send_at()),
        "Add at least one variant",
    ),
    "A/B test with one variant": (
        lambda: ready(ab_mode=Campaign.AbMode.SPLIT),
        "An A/B test needs at least two variants",
    ),
    "no text in the default language": (
        lambda: (
            VariantFactory(
                name="A",
                campaign=CampaignFactory(schedule_type=Campaign.ScheduleType.AT, send_at=send_at()),
                title_en="",
                body_en="",
                title_de="Hallo",
                body_de="Neue Angebote.",
            ).campaign
        ),
        "Variant A: write the title and body in the campaign's default language (English)",
    ),
    "a template error": (
        lambda: (
            VariantFactory(
                name="A",
                campaign=CampaignFactory(schedule_type=Campaign.ScheduleType.AT, send_at=send_at()),
                title_en="Hi {% if subscriber.first_name %}{{ subscriber.first_name }}",
            ).campaign
        ),
        "Variant A (en): ",
    ),
    "a translation with a title but no body": (
        lambda: (
            VariantFactory(
                name="A",
                campaign=CampaignFactory(schedule_type=Campaign.ScheduleType.AT, send_at=send_at()),
                title_es="Hola",
            ).campaign
        ),
        "Variant A (es): ",
    ),
    "a send time in the past": (
        lambda: ready(send_at=timezone.now() - dt.timedelta(hours=2)),
        "is in the past; choose a later one",
    ),
    "a cron expression with four fields": (
        lambda: ready(
            kind=Campaign.Kind.RECURRING, schedule_type=Campaign.ScheduleType.CRON, cron_expression="0 9 * *"
        ),
        "needs five fields",
    ),
    "a cron expression out of range": (
        lambda: ready(
            kind=Campaign.Kind.RECURRING,
            schedule_type=Campaign.ScheduleType.CRON,
            cron_expression="0 25 * * *",
        ),
        "is not valid",
    ),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_launch_is_refused_with_the_problem_listed(case: str, marketer: User) -> None:
    make, expected = PROBLEMS[case]
    campaign = make()

    with pytest.raises(CampaignValidationError) as refused:
        campaign_launch(campaign=campaign, actor=marketer)

    assert any(expected in problem for problem in refused.value.problems), refused.value.problems
    assert reload(campaign).status == S.DRAFT
    assert history(campaign) == []
    assert not PeriodicTask.objects.filter(task="delivery.tasks.plan_run").exists()
    # Submitting for review checks the same things.
    with pytest.raises(CampaignValidationError):
        campaign_submit_for_review(campaign=campaign, actor=marketer)
    assert reload(campaign).status == S.DRAFT


def test_every_problem_is_listed_at_once(marketer: User) -> None:
    campaign = CampaignFactory(
        schedule_type=Campaign.ScheduleType.AT,
        send_at=timezone.now() - dt.timedelta(days=1),
        ab_mode=Campaign.AbMode.SPLIT,
    )
    with pytest.raises(CampaignValidationError) as refused:
        campaign_launch(campaign=campaign, actor=marketer)
    problems = refused.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("Add at least one variant")
    assert problems[1].startswith("An A/B test needs at least two variants")
    assert "in the past" in problems[2]
    assert refused.value.extra == {"problems": problems}


def test_a_campaign_without_problems_launches(marketer: User) -> None:
    campaign = ready(ab_mode=Campaign.AbMode.SPLIT)
    VariantFactory(campaign=campaign, name="B", title_de="Hallo", body_de="Neu bei uns.")
    campaign = campaign_launch(campaign=campaign, actor=marketer)
    assert campaign.status == S.SCHEDULED
    assert campaign.audience_size == 0


# -- approval above the threshold --------------------------------------------------------


@pytest.fixture
def big_audience(settings: Any) -> None:
    settings.NOTIFYHUB_APPROVAL_THRESHOLD = 2
    for i in range(3):
        DeviceFactory(subscriber=SubscriberFactory(external_id=f"big-{i}"))


@pytest.mark.usefixtures("big_audience")
def test_a_marketer_cannot_launch_a_campaign_above_the_threshold(marketer: User) -> None:
    campaign = ready()
    with pytest.raises(CampaignStateError, match=r"reaches 3 subscribers, more than 2: an Approver"):
        campaign_launch(campaign=campaign, actor=marketer)
    assert reload(campaign).status == S.DRAFT
    assert history(campaign) == []
    with pytest.raises(CampaignStateError):
        campaign_launch(campaign=campaign, actor=None)  # nor can the system, unasked


@pytest.mark.usefixtures("big_audience")
def test_an_approver_can_launch_a_campaign_above_the_threshold(approver: User) -> None:
    campaign = campaign_launch(campaign=ready(), actor=approver)
    assert campaign.status == S.SCHEDULED
    assert campaign.audience_size == 3
    assert history(campaign) == [(S.DRAFT, S.SCHEDULED, approver.pk)]


@pytest.mark.usefixtures("big_audience")
def test_a_marketer_can_launch_it_once_an_approver_approved_it(marketer: User, approver: User) -> None:
    campaign = campaign_submit_for_review(campaign=ready(), actor=marketer)
    campaign = campaign_approve(campaign=campaign, actor=approver, note="looks good")
    assert (campaign.approved_by, campaign.status) == (approver, S.APPROVED)
    assert campaign.approved_at is not None

    campaign = campaign_launch(campaign=campaign, actor=marketer)

    assert campaign.status == S.SCHEDULED
    assert history(campaign) == [
        (S.DRAFT, S.IN_REVIEW, marketer.pk),
        (S.IN_REVIEW, S.APPROVED, approver.pk),
        (S.APPROVED, S.SCHEDULED, marketer.pk),
    ]
    assert CampaignStatusChange.objects.get(to_status=S.APPROVED).note == "looks good"


@pytest.mark.usefixtures("big_audience")
def test_back_to_draft_withdraws_the_approval(marketer: User, approver: User) -> None:
    campaign = campaign_submit_for_review(campaign=ready(), actor=marketer)
    campaign = campaign_approve(campaign=campaign, actor=approver)
    campaign = campaign_return_to_draft(campaign=campaign, actor=marketer)
    assert (campaign.status, campaign.approved_by, campaign.approved_at) == (S.DRAFT, None, None)
    with pytest.raises(CampaignStateError, match="an Approver"):
        campaign_launch(campaign=campaign, actor=marketer)


def test_below_the_threshold_a_marketer_launches_alone(settings: Any, marketer: User) -> None:
    settings.NOTIFYHUB_APPROVAL_THRESHOLD = 3
    for i in range(3):
        DeviceFactory(subscriber=SubscriberFactory(external_id=f"small-{i}"))
    assert campaign_launch(campaign=ready(), actor=marketer).status == S.SCHEDULED


@pytest.mark.parametrize("who", ["marketer", "viewer", "staff without a group", "nobody"])
def test_approving_needs_the_approve_permission(who: str, marketer: User) -> None:
    actor = {
        "marketer": marketer,
        "viewer": member(VIEWER),
        "staff without a group": UserFactory(username="plain"),
        "nobody": None,
    }[who]
    campaign = campaign_submit_for_review(campaign=ready(), actor=marketer)
    with pytest.raises(CampaignStateError, match="Only an Approver"):
        campaign_approve(campaign=campaign, actor=actor)
    assert reload(campaign).status == S.IN_REVIEW
    assert len(history(campaign)) == 1


def test_only_a_campaign_in_review_can_be_approved(approver: User) -> None:
    with pytest.raises(CampaignStateError, match="not in review; submit it for review first"):
        campaign_approve(campaign=ready(), actor=approver)


# -- the beat task follows the status -----------------------------------------------------


def test_launch_creates_the_beat_task(marketer: User) -> None:
    campaign = campaign_launch(campaign=ready(), actor=marketer)
    task = campaign.periodic_task
    assert task is not None
    assert task.task == "delivery.tasks.plan_run"
    assert task.kwargs == f'{{"campaign_id": {campaign.pk}}}'
    assert task.enabled and task.one_off
    assert task.clocked is not None and task.clocked.clocked_time == campaign.send_at
    assert task.name.startswith(f"Campaign #{campaign.pk}: ")


def test_pause_disables_the_task_and_resume_enables_it(marketer: User) -> None:
    campaign = campaign_launch(campaign=ready(), actor=marketer)
    task_id = campaign.periodic_task_id

    campaign = campaign_pause(campaign=campaign, actor=marketer)
    assert campaign.periodic_task_id == task_id
    assert PeriodicTask.objects.get(pk=task_id).enabled is False

    campaign = campaign_resume(campaign=campaign, actor=marketer)
    assert campaign.status == S.SCHEDULED
    assert campaign.periodic_task_id == task_id
    assert PeriodicTask.objects.get(pk=task_id).enabled is True


def test_resume_returns_a_running_campaign_to_running(marketer: User) -> None:
    campaign = campaign_mark_running(campaign=campaign_launch(campaign=ready(), actor=marketer))
    campaign = campaign_resume(campaign=campaign_pause(campaign=campaign, actor=marketer), actor=marketer)
    assert campaign.status == S.RUNNING
    # A one-off that has started leaves nothing for beat to do.
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).enabled is False


def test_resume_is_refused_when_the_send_time_passed_during_the_pause(marketer: User) -> None:
    campaign = campaign_pause(campaign=campaign_launch(campaign=ready(), actor=marketer), actor=marketer)
    _past(campaign)
    with pytest.raises(CampaignStateError, match=r"^Cannot resume: The send time .* is in the past"):
        campaign_resume(campaign=reload(campaign), actor=marketer)
    assert reload(campaign).status == S.PAUSED


@pytest.mark.parametrize("state", [S.DRAFT, S.IN_REVIEW, S.APPROVED, S.COMPLETED, S.CANCELLED])
def test_only_a_paused_campaign_can_be_resumed(state: str, marketer: User, approver: User) -> None:
    campaign = bring_to(state, marketer=marketer, approver=approver)
    with pytest.raises(CampaignStateError, match="only a paused campaign can be resumed"):
        campaign_resume(campaign=campaign, actor=marketer)
    assert reload(campaign).status == state
    assert not PeriodicTask.objects.filter(pk=campaign.periodic_task_id or 0, enabled=True).exists()


@pytest.mark.parametrize("source", [S.SCHEDULED, S.RUNNING, S.PAUSED])
def test_cancel_keeps_the_task_disabled_as_a_record(source: str, marketer: User, approver: User) -> None:
    campaign = bring_to(source, marketer=marketer, approver=approver)
    task_id = campaign.periodic_task_id
    campaign = campaign_cancel(campaign=campaign, actor=marketer)
    assert campaign.periodic_task_id == task_id
    assert PeriodicTask.objects.get(pk=task_id).enabled is False


@pytest.mark.parametrize("source", [S.SCHEDULED, S.PAUSED])
def test_back_to_draft_deletes_the_task_and_its_clocked_schedule(
    source: str, marketer: User, approver: User
) -> None:
    campaign = bring_to(source, marketer=marketer, approver=approver)
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)

    campaign = campaign_return_to_draft(campaign=campaign, actor=marketer)

    assert campaign.periodic_task is None
    assert reload(campaign).periodic_task_id is None
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    assert not ClockedSchedule.objects.filter(pk=task.clocked_id).exists()
    # Launching again creates a new task.
    assert campaign_launch(campaign=campaign, actor=marketer).periodic_task is not None


def test_a_triggered_campaign_has_no_beat_task(marketer: User) -> None:
    campaign = campaign_launch(campaign=ready(kind=Campaign.Kind.TRIGGERED), actor=marketer)
    assert campaign.status == S.SCHEDULED
    assert campaign.periodic_task is None


# -- duplicate and archive -------------------------------------------------------------------


def test_duplicate_is_a_draft_with_the_same_variants_translations_and_audience(
    marketer: User, approver: User
) -> None:
    source = bring_to(S.SCHEDULED, marketer=marketer, approver=approver)
    Variant.objects.filter(campaign=source).update(title_de="Hallo", body_de="Neu.", weight=3)
    VariantFactory(campaign=source, name="B", title_es="Hola", body_es="¡Nuevo!", data={"screen": "sale"})
    vip = segment_create_static(name="VIP", subscribers=[])
    lapsed = segment_create_static(name="Lapsed", subscribers=[])
    source.include_segments.set([vip])
    source.exclude_segments.set([lapsed])

    copy = campaign_duplicate(campaign=source, actor=approver)

    assert copy.pk != source.pk
    assert copy.name == f"{source.name} (copy)"
    assert (copy.status, copy.periodic_task, copy.approved_by, copy.created_by) == (
        S.DRAFT,
        None,
        None,
        approver,
    )
    assert (copy.topic, copy.schedule_type, copy.send_at) == (
        source.topic,
        source.schedule_type,
        source.send_at,
    )
    assert list(copy.include_segments.all()) == [vip]
    assert list(copy.exclude_segments.all()) == [lapsed]
    fields = ("name", "weight", "title_en", "body_en", "title_de", "body_de", "title_es", "body_es", "data")
    copied = list(Variant.objects.filter(campaign=copy).order_by("name").values_list(*fields))
    assert copied == list(Variant.objects.filter(campaign=source).order_by("name").values_list(*fields))
    assert copied[0][4:6] == ("Hallo", "Neu.")
    assert history(copy) == []
    # The original is untouched and still scheduled, with its own task.
    assert reload(source).status == S.SCHEDULED
    assert reload(source).periodic_task_id is not None
    assert Variant.objects.filter(campaign=source).count() == 2


@pytest.mark.parametrize("state", [S.DRAFT, S.COMPLETED, S.CANCELLED])
def test_finished_campaigns_and_drafts_can_be_archived(state: str, marketer: User, approver: User) -> None:
    campaign = bring_to(state, marketer=marketer, approver=approver)
    campaign = campaign_archive(campaign=campaign, actor=marketer)
    archived_at = campaign.archived_at
    assert archived_at is not None
    assert not Campaign.objects.active().filter(pk=campaign.pk).exists()
    # Archiving again changes nothing.
    assert campaign_archive(campaign=campaign, actor=marketer).archived_at == archived_at
    assert reload(campaign).status == state


@pytest.mark.parametrize("state", [S.IN_REVIEW, S.APPROVED, S.SCHEDULED, S.RUNNING, S.PAUSED])
def test_live_campaigns_cannot_be_archived(state: str, marketer: User, approver: User) -> None:
    campaign = bring_to(state, marketer=marketer, approver=approver)
    with pytest.raises(CampaignStateError, match="cancel it or let it complete before archiving it"):
        campaign_archive(campaign=campaign, actor=marketer)
    assert reload(campaign).archived_at is None
    assert Campaign.objects.active().filter(pk=campaign.pk).exists()
