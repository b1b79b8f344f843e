"""A campaign's status changes: each one checked, recorded (who, when), and mirrored in beat.

draft → (in review → approved) → scheduled → running → completed, or paused /
cancelled. Every change is one atomic action: it locks the campaign row, refuses a
change the state machine does not allow (``CampaignStateError`` with a message the
marketer can act on), returns early when nothing changes, appends a
``CampaignStatusChange`` with the acting user, and re-syncs the django-celery-beat
task in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.db import transaction
from django.utils import timezone

from audiences.models import AttributeDefinition
from campaigns.models import Campaign, CampaignStatusChange, Variant
from campaigns.selectors import campaign_audience_size, variant_languages
from campaigns.services.scheduling import ScheduleError, campaign_schedule_check, campaign_sync_schedule
from notifyhub.exceptions import ApplicationError

S = Campaign.Status
User = AbstractBaseUser | AnonymousUser

ALLOWED: dict[str, set[str]] = {
    S.DRAFT: {S.IN_REVIEW, S.SCHEDULED, S.CANCELLED},
    S.IN_REVIEW: {S.APPROVED, S.DRAFT, S.CANCELLED},
    S.APPROVED: {S.SCHEDULED, S.DRAFT, S.CANCELLED},
    S.SCHEDULED: {S.RUNNING, S.PAUSED, S.CANCELLED, S.DRAFT, S.COMPLETED},
    S.RUNNING: {S.COMPLETED, S.PAUSED, S.CANCELLED},
    S.PAUSED: {S.SCHEDULED, S.RUNNING, S.CANCELLED, S.DRAFT},
    S.COMPLETED: set(),
    S.CANCELLED: set(),
}


class CampaignStateError(ApplicationError):
    pass


class CampaignValidationError(ApplicationError):
    """The campaign cannot be launched as it is; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems), extra={"problems": problems})
        self.problems = problems


def _can_approve(actor: User | None) -> bool:
    return actor is not None and actor.has_perm("campaigns.approve_campaign")  # type: ignore[union-attr]


def _label(status: str) -> str:
    return str(S(status).label)


@transaction.atomic
def _transition(
    *, campaign: Campaign, to: str, actor: User | None, note: str = "", **fields: Any
) -> Campaign:
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status == to:
        # Nothing changes (launching a scheduled campaign, pausing a paused one…):
        # no history row, no beat write.
        return locked
    if to not in ALLOWED[locked.status]:
        raise CampaignStateError(
            f"“{locked.name}” is {_label(locked.status).lower()}; it cannot become {_label(to).lower()}."
        )
    previous = locked.status
    locked.status = to
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=["status", "updated_at", *fields])
    CampaignStatusChange.objects.create(
        campaign=locked,
        from_status=previous,
        to_status=to,
        actor=actor if isinstance(actor, AuthUser) else None,
        note=note[:255],
    )
    campaign_sync_schedule(campaign=locked)
    campaign.refresh_from_db()
    return campaign


def campaign_problems(*, campaign: Campaign, now: dt.datetime | None = None) -> list[str]:
    """Everything that stops this campaign from being launched, in words a marketer can act on."""
    # Imported here: rendering is pure logic with its own (template engine) set-up.
    from campaigns.rendering import validate_variant

    problems: list[str] = []
    variants = list(campaign.variants.all())
    if not variants:
        problems.append("Add at least one variant (the message to send).")
    if campaign.ab_mode != Campaign.AbMode.NONE and len(variants) < 2:
        problems.append("An A/B test needs at least two variants; add one or turn the A/B test off.")
    known_attributes = set(AttributeDefinition.objects.values_list("key", flat=True))
    for variant in variants:
        if campaign.default_language not in variant_languages(variant=variant):
            problems.append(
                f"Variant {variant.name}: write the title and body in the campaign's default language "
                f"({campaign.get_default_language_display()})."
            )
        for code, _name in settings.LANGUAGES:
            suffix = code.replace("-", "_")
            title = getattr(variant, f"title_{suffix}", "") or ""
            body = getattr(variant, f"body_{suffix}", "") or ""
            if not title.strip() and not body.strip():
                continue
            for error in validate_variant(
                title=title,
                body=body,
                click_url=variant.click_url,
                data=variant.data or {},
                known_attributes=known_attributes,
            ):
                problems.append(f"Variant {variant.name} ({code}): {error.message}")
    try:
        campaign_schedule_check(campaign=campaign, now=now)
    except ScheduleError as exc:
        problems.append(exc.message)
    except ValueError as exc:
        problems.append(f"The schedule is not valid: {exc}.")
    return problems


def campaign_submit_for_review(*, campaign: Campaign, actor: User | None) -> Campaign:
    problems = campaign_problems(campaign=campaign)
    if problems:
        raise CampaignValidationError(problems)
    return _transition(campaign=campaign, to=S.IN_REVIEW, actor=actor, note="submitted for review")


def campaign_approve(*, campaign: Campaign, actor: User | None, note: str = "") -> Campaign:
    if not _can_approve(actor):
        raise CampaignStateError("Only an Approver can approve a campaign.")
    if campaign.status not in {S.IN_REVIEW, S.APPROVED}:  # approving twice changes nothing
        raise CampaignStateError(f"“{campaign.name}” is not in review; submit it for review first.")
    return _transition(
        campaign=campaign,
        to=S.APPROVED,
        actor=actor,
        note=note or "approved",
        approved_by=actor if actor is not None and actor.is_authenticated else None,
        approved_at=timezone.now(),
    )


def campaign_return_to_draft(*, campaign: Campaign, actor: User | None, note: str = "") -> Campaign:
    """Reject a review, withdraw an approval, or unschedule: back to an editable draft."""
    return _transition(
        campaign=campaign,
        to=S.DRAFT,
        actor=actor,
        note=note or "back to draft",
        approved_by=None,
        approved_at=None,
    )


def campaign_launch(*, campaign: Campaign, actor: User | None, now: dt.datetime | None = None) -> Campaign:
    """Schedule the campaign (send now, at its time, or on its recurrence).

    Checks the content and schedule, measures the audience, and requires an
    Approver when the audience is larger than ``NOTIFYHUB_APPROVAL_THRESHOLD``
    (an approved campaign was already approved by one). Creates the beat task in
    the same transaction; beat starts the run when it is due.
    """
    problems = campaign_problems(campaign=campaign, now=now)
    if problems:
        raise CampaignValidationError(problems)
    size = campaign_audience_size(campaign=campaign)
    threshold = settings.NOTIFYHUB_APPROVAL_THRESHOLD
    if size > threshold and campaign.status != S.APPROVED and not _can_approve(actor):
        raise CampaignStateError(
            f"This campaign reaches {size:,} subscribers, more than {threshold:,}: an Approver must approve "
            "or launch it. Submit it for review."
        )
    return _transition(campaign=campaign, to=S.SCHEDULED, actor=actor, note="launched", audience_size=size)


def campaign_pause(*, campaign: Campaign, actor: User | None) -> Campaign:
    return _transition(campaign=campaign, to=S.PAUSED, actor=actor, note="paused")


def campaign_resume(*, campaign: Campaign, actor: User | None) -> Campaign:
    """Back to where it was before the pause: scheduled, or running if a run has started."""
    if campaign.status in {S.SCHEDULED, S.RUNNING}:
        return campaign  # not paused: nothing to resume
    if campaign.status != S.PAUSED:
        # Without this, "resuming" a draft would schedule it past the launch checks.
        raise CampaignStateError(
            f"“{campaign.name}” is {_label(campaign.status).lower()}; only a paused campaign can be resumed."
        )
    previous = (
        CampaignStatusChange.objects.filter(campaign=campaign, to_status=S.PAUSED)
        .values_list("from_status", flat=True)
        .first()
    )
    to = S.RUNNING if previous == S.RUNNING else S.SCHEDULED
    if to == S.SCHEDULED:
        try:
            campaign_schedule_check(campaign=campaign)
        except ScheduleError as exc:
            raise CampaignStateError(f"Cannot resume: {exc.message}") from exc
    return _transition(campaign=campaign, to=to, actor=actor, note="resumed")


def campaign_cancel(*, campaign: Campaign, actor: User | None) -> Campaign:
    return _transition(campaign=campaign, to=S.CANCELLED, actor=actor, note="cancelled")


def campaign_mark_running(*, campaign: Campaign) -> Campaign:
    """Called when a run starts (by the system, not a person). Idempotent."""
    if campaign.status == S.RUNNING:
        return campaign
    return _transition(campaign=campaign, to=S.RUNNING, actor=None, note="run started")


def campaign_complete(*, campaign: Campaign, note: str = "completed") -> Campaign:
    return _transition(campaign=campaign, to=S.COMPLETED, actor=None, note=note)


@transaction.atomic
def campaign_save(*, campaign: Campaign, actor: User | None) -> Campaign:
    """After the admin saved a campaign: keep the beat task in step with the new schedule.

    A scheduled or paused campaign may have its schedule edited; the task follows.
    """
    if campaign.status in {S.SCHEDULED, S.PAUSED}:
        try:
            campaign_schedule_check(campaign=campaign)
        except ScheduleError as exc:
            raise CampaignStateError(exc.message) from exc
        campaign_sync_schedule(campaign=campaign)
    return campaign


@transaction.atomic
def campaign_duplicate(*, campaign: Campaign, actor: User | None) -> Campaign:
    """A new draft with the same settings, audience and variants (translations included)."""
    source = Campaign.objects.get(pk=campaign.pk)
    copy = Campaign.objects.get(pk=campaign.pk)
    copy.pk = None
    copy.id = None
    copy._state.adding = True
    copy.name = f"{source.name} (copy)"[:200]
    copy.status = S.DRAFT
    copy.periodic_task = None
    copy.approved_by = None
    copy.approved_at = None
    copy.audience_size = None
    copy.archived_at = None
    copy.created_by = actor if actor is not None and actor.is_authenticated else None  # type: ignore[assignment]
    copy.save()
    copy.include_segments.set(source.include_segments.all())
    copy.exclude_segments.set(source.exclude_segments.all())
    for variant in Variant.objects.filter(campaign=source):
        variant.pk = None
        variant.id = None
        variant._state.adding = True
        variant.campaign = copy
        variant.save()
    return copy


@transaction.atomic
def campaign_archive(*, campaign: Campaign, actor: User | None) -> Campaign:
    """Hide a finished campaign from the default list. Only completed, cancelled or draft ones."""
    if campaign.status not in {S.COMPLETED, S.CANCELLED, S.DRAFT}:
        raise CampaignStateError(
            f"“{campaign.name}” is {_label(campaign.status).lower()}; cancel it or let it complete before "
            "archiving it."
        )
    if campaign.archived_at is None:
        campaign.archived_at = timezone.now()
        campaign.save(update_fields=["archived_at", "updated_at"])
    return campaign
