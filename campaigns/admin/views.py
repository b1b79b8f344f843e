"""The campaign page's own views: status buttons, duplicate, archive, preview, test send.

Every button that changes something is a POST (cancel shows a confirmation page
first, like Django's delete), calls one service of ``campaigns.services``, writes a
LogEntry (the campaign's admin History) and answers with a message: a refused change
is a message the marketer can act on, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_POST

from campaigns.admin.preview import language_report, preview_build
from campaigns.models import Campaign
from campaigns.services import (
    CampaignValidationError,
    campaign_approve,
    campaign_archive,
    campaign_cancel,
    campaign_duplicate,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaign_return_to_draft,
    campaign_submit_for_review,
)
from notifyhub.exceptions import ApplicationError

S = Campaign.Status


@dataclass(frozen=True)
class Transition:
    label: Any
    service: Callable[..., Campaign]
    sources: frozenset[str]
    done: Any  # success message, with %(name)s
    log: str  # LogEntry message (stored untranslated, like Django's own)
    icon: str
    variant: str = "default"
    permission: str = ""


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(
        label=gettext_lazy("Submit for review"),
        service=campaign_submit_for_review,
        sources=frozenset({S.DRAFT}),
        done=gettext_lazy("“%(name)s” was submitted for review."),
        log="Submitted for review.",
        icon="rate_review",
    ),
    "approve": Transition(
        label=gettext_lazy("Approve"),
        service=campaign_approve,
        sources=frozenset({S.IN_REVIEW}),
        done=gettext_lazy("“%(name)s” is approved: it can be launched."),
        log="Approved.",
        icon="verified",
        variant="primary",
        permission="campaigns.approve_campaign",
    ),
    "draft": Transition(
        label=gettext_lazy("Back to draft"),
        service=campaign_return_to_draft,
        sources=frozenset({S.IN_REVIEW, S.APPROVED, S.SCHEDULED, S.PAUSED}),
        done=gettext_lazy("“%(name)s” is a draft again: edit it and launch or submit it once more."),
        log="Returned to draft.",
        icon="undo",
    ),
    "launch": Transition(
        label=gettext_lazy("Launch"),
        service=campaign_launch,
        sources=frozenset({S.DRAFT, S.APPROVED}),
        done=gettext_lazy("“%(name)s” is scheduled."),
        log="Launched (scheduled).",
        icon="rocket_launch",
        variant="primary",
    ),
    "pause": Transition(
        label=gettext_lazy("Pause"),
        service=campaign_pause,
        sources=frozenset({S.SCHEDULED, S.RUNNING}),
        done=gettext_lazy("“%(name)s” is paused: nothing more is sent until you resume it."),
        log="Paused.",
        icon="pause",
    ),
    "resume": Transition(
        label=gettext_lazy("Resume"),
        service=campaign_resume,
        sources=frozenset({S.PAUSED}),
        done=gettext_lazy("“%(name)s” is resumed."),
        log="Resumed.",
        icon="play_arrow",
        variant="primary",
    ),
}
CANCELLABLE = frozenset({S.DRAFT, S.IN_REVIEW, S.APPROVED, S.SCHEDULED, S.RUNNING, S.PAUSED})
ARCHIVABLE = frozenset({S.COMPLETED, S.CANCELLED, S.DRAFT})
SEND_TEST_PERMISSION = "campaigns.send_test_campaign"


@dataclass(frozen=True)
class Button:
    key: str
    label: Any
    url: str
    icon: str
    variant: str = "default"
    method: str = "post"  # "get": a link (to a confirmation page)


class CampaignViewsMixin:
    """Mixed into ``CampaignAdmin`` (a ModelAdmin): URLs, buttons and views."""

    admin_site: Any
    model: type[Campaign]
    get_object: Callable[..., Campaign | None]
    has_change_permission: Callable[..., bool]
    has_add_permission: Callable[..., bool]
    has_view_permission: Callable[..., bool]
    log_change: Callable[..., Any]
    log_addition: Callable[..., Any]

    def transition_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/transition/<slug:key>/",
                wrap(require_POST(self.transition_view)),
                name="campaigns_campaign_transition",
            ),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="campaigns_campaign_cancel"),
            path(
                "<path:object_id>/duplicate/",
                wrap(require_POST(self.duplicate_view)),
                name="campaigns_campaign_duplicate",
            ),
            path(
                "<path:object_id>/archive/",
                wrap(require_POST(self.archive_view)),
                name="campaigns_campaign_archive",
            ),
            path(
                "<path:object_id>/preview/",
                wrap(require_GET(self.preview_view)),
                name="campaigns_campaign_preview",
            ),
            path(
                "<path:object_id>/send-test/",
                wrap(require_POST(self.send_test_view)),
                name="campaigns_campaign_send_test",
            ),
        ]

    # -- what the change page offers ---------------------------------------------------

    def available_buttons(self, request: HttpRequest, campaign: Campaign) -> list[Button]:
        buttons: list[Button] = []
        if self.has_change_permission(request, campaign):
            for key, transition in TRANSITIONS.items():
                if campaign.status not in transition.sources:
                    continue
                if transition.permission and not request.user.has_perm(transition.permission):
                    continue
                url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, key])
                buttons.append(Button(key, transition.label, url, transition.icon, transition.variant))
            if campaign.status in CANCELLABLE:
                url = reverse("admin:campaigns_campaign_cancel", args=[campaign.pk])
                buttons.append(Button("cancel", _("Cancel"), url, "block", "danger", method="get"))
            if campaign.status in ARCHIVABLE and campaign.archived_at is None:
                url = reverse("admin:campaigns_campaign_archive", args=[campaign.pk])
                buttons.append(Button("archive", _("Archive"), url, "inventory_2"))
        if self.has_add_permission(request):
            url = reverse("admin:campaigns_campaign_duplicate", args=[campaign.pk])
            buttons.append(Button("duplicate", _("Duplicate"), url, "content_copy"))
        return buttons

    def can_send_test(self, request: HttpRequest, campaign: Campaign) -> bool:
        return request.user.has_perm(SEND_TEST_PERMISSION) and self.has_view_permission(request, campaign)

    # -- helpers -----------------------------------------------------------------

    def _campaign(self, request: HttpRequest, object_id: str) -> Campaign:
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404(_("This campaign does not exist (any more)."))
        return campaign

    def _change_url(self, campaign: Campaign) -> str:
        return reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    def _require_change(self, request: HttpRequest, campaign: Campaign) -> None:
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied

    # -- status changes ------------------------------------------------------------

    def transition_view(self, request: HttpRequest, object_id: str, key: str) -> HttpResponse:
        transition = TRANSITIONS.get(key)
        if transition is None:
            raise Http404
        campaign = self._campaign(request, object_id)
        self._require_change(request, campaign)
        if transition.permission and not request.user.has_perm(transition.permission):
            raise PermissionDenied
        if campaign.status not in transition.sources:
            # The page was stale (someone moved the campaign on meanwhile): say so.
            messages.error(
                request,
                _("“%(name)s” is %(status)s now: “%(action)s” no longer applies.")
                % {
                    "name": campaign.name,
                    "status": campaign.get_status_display().lower(),
                    "action": transition.label,
                },
            )
            return HttpResponseRedirect(self._change_url(campaign))
        try:
            campaign = transition.service(campaign=campaign, actor=request.user)
        except CampaignValidationError as exc:
            messages.error(
                request,
                _("“%(name)s” cannot move on yet. Fix these first:") % {"name": campaign.name},
            )
            for problem in exc.problems:
                messages.error(request, problem)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            self.log_change(request, campaign, transition.log)
            done = str(transition.done) % {"name": campaign.name}
            if campaign.status == S.SCHEDULED:
                done = f"{done} {schedule_summary(campaign)}."
            messages.success(request, done)
        return HttpResponseRedirect(self._change_url(campaign))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: “are you sure?”; POST: cancel. Cancelling cannot be undone."""
        campaign = self._campaign(request, object_id)
        self._require_change(request, campaign)
        if request.method == "POST":
            try:
                campaign = campaign_cancel(campaign=campaign, actor=request.user)
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                self.log_change(request, campaign, "Cancelled.")
                messages.success(request, _("“%(name)s” is cancelled.") % {"name": campaign.name})
            return HttpResponseRedirect(self._change_url(campaign))
        if request.method != "GET":
            return HttpResponse(status=405)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": _("Cancel “%(name)s”?") % {"name": campaign.name},
            "change_url": self._change_url(campaign),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/cancel_confirmation.html", context)

    def duplicate(self, request: HttpRequest, campaign: Campaign) -> Campaign | None:
        try:
            copy = campaign_duplicate(campaign=campaign, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return None
        self.log_addition(request, copy, [{"added": {}}])
        self.log_change(request, campaign, f"Duplicated as “{copy.name}” (#{copy.pk}).")
        messages.success(
            request,
            _("“%(name)s” was duplicated as the draft “%(copy)s”.") % {"name": campaign, "copy": copy},
        )
        return copy

    def duplicate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        copy = self.duplicate(request, campaign)
        return HttpResponseRedirect(self._change_url(copy or campaign))

    def archive(self, request: HttpRequest, campaign: Campaign) -> bool:
        try:
            campaign = campaign_archive(campaign=campaign, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return False
        self.log_change(request, campaign, "Archived.")
        messages.success(request, _("“%(name)s” is archived.") % {"name": campaign.name})
        return True

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        self._require_change(request, campaign)
        if self.archive(request, campaign):
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_changelist"))
        return HttpResponseRedirect(self._change_url(campaign))

    # -- preview and test send -------------------------------------------------------

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        preview = preview_build(
            campaign=campaign,
            variant_id=request.GET.get("variant"),
            language=request.GET.get("lang"),
            external_id=request.GET.get("subscriber"),
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": _("Preview: %(name)s") % {"name": campaign.name},
            "preview": preview,
            "languages": preview.languages(),
            "language_report": language_report(campaign=campaign) if preview.variants else None,
            "change_url": self._change_url(campaign),
            "preview_url": reverse("admin:campaigns_campaign_preview", args=[campaign.pk]),
            "send_test_url": reverse("admin:campaigns_campaign_send_test", args=[campaign.pk]),
            "can_send_test": self.can_send_test(request, campaign),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        if not self.can_send_test(request, campaign):
            raise PermissionDenied
        variant_id = request.POST.get("variant", "")
        variant = campaign.variants.filter(pk=variant_id).first() if variant_id.isdigit() else None
        language = request.POST.get("language") or None
        if language not in {code for code, _name in settings.LANGUAGES}:
            language = None
        # Imported here, not at module level: delivery depends on campaigns
        # (audiences ← campaigns ← delivery), never the other way round.
        from delivery.services import test_send_create

        try:
            run = test_send_create(
                campaign=campaign,
                user=request.user,  # type: ignore[arg-type]
                variant=variant,
                language=language,
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            devices = run.audience_size or 0  # one delivery per active test device
            self.log_change(request, campaign, "Sent a test to my devices.")
            messages.success(
                request,
                ngettext("Test queued to %(n)d device.", "Test queued to %(n)d devices.", devices)
                % {"n": devices},
            )
        if request.POST.get("next") == "preview":
            back = reverse("admin:campaigns_campaign_preview", args=[campaign.pk])
            query = urlencode(
                {
                    "variant": variant.pk if variant else "",
                    "lang": language or "",
                    "subscriber": request.POST.get("subscriber", "")[:200],
                }
            )
            return HttpResponseRedirect(f"{back}?{query}")
        return HttpResponseRedirect(self._change_url(campaign))


def schedule_summary(campaign: Campaign) -> str:
    """One line: “At 2030-01-01 09:00 UTC”, “Daily at 09:00 (Europe/Berlin)”."""
    T = Campaign.ScheduleType
    if campaign.kind == Campaign.Kind.TRIGGERED:
        return str(_("When triggered"))
    kind = campaign.schedule_type
    time = campaign.local_time.strftime("%H:%M") if campaign.local_time else "?"
    if kind == T.NOW:
        return str(_("Now, on launch"))
    if kind == T.AT:
        if campaign.send_at is None:
            return str(_("At — (no time yet)"))
        return str(_("At %(when)s")) % {
            "when": date_format(timezone.localtime(campaign.send_at), "Y-m-d H:i e")
        }
    if kind == T.LOCAL_TIME:
        day = campaign.local_date.isoformat() if campaign.local_date else "?"
        return str(_("%(day)s at %(time)s local time")) % {"day": day, "time": time}
    if kind == T.DAILY:
        return str(_("Daily at %(time)s (%(tz)s)")) % {"time": time, "tz": campaign.schedule_timezone}
    if kind == T.WEEKLY:
        return str(_("Weekly (%(days)s) at %(time)s (%(tz)s)")) % {
            "days": campaign.weekdays or "?",
            "time": time,
            "tz": campaign.schedule_timezone,
        }
    return str(_("Cron “%(cron)s” (%(tz)s)")) % {
        "cron": campaign.cron_expression,
        "tz": campaign.schedule_timezone,
    }
