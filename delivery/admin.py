"""Admin for delivery: runs, the ledger, the device inbox (outbox), test sends, heartbeats.

Everything here is read-only (``ReadOnlyAdminMixin``): runs, ledger rows and outbox
messages are written by the services and tasks only. The Run page adds live progress
(counts, rate, ETA, results per variant; ``static/delivery/run_progress.js`` polls a
JSON status view, a ``<noscript>`` meta refresh does without JS) and two actions for
users with the change permission on runs: "Retry failed" and "Resume"
(``delivery.recovery``). Lists stay cheap on big tables:
related objects are joined (``list_select_related``), runs get their per-status
counts from one aggregate query per page, relation filters use autocomplete (no
select listing every device), and no page counts the whole table twice.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    FieldTextFilter,
)
from unfold.decorators import display
from unfold.views import ChangeList
from unfold.widgets import UnfoldAdminSelectWidget

from audiences.models import Device
from campaigns.models import Campaign, TestDevice, Variant
from delivery.models import Delivery, Heartbeat, OutboxMessage, Run
from delivery.recovery import RETRYABLE, run_resume, run_retry_failed
from delivery.selectors import (
    INBOX_LIMIT,
    RunProgress,
    device_inbox,
    run_delivery_counts,
    run_limit_per_minute,
    run_progress,
)
from delivery.services import test_send_create
from notifyhub.admin_mixins import ReadOnlyAdminMixin
from notifyhub.exceptions import ApplicationError

RUN_STATUS_COLOURS = {
    Run.Status.PENDING.label: "info",
    Run.Status.PLANNING.label: "info",
    Run.Status.SENDING.label: "warning",
    Run.Status.COMPLETED.label: "success",
    Run.Status.PARTIALLY_FAILED.label: "danger",
    Run.Status.PAUSED.label: "danger",
    Run.Status.CANCELLED.label: "danger",
}
DELIVERY_STATUS_COLOURS = {
    Delivery.Status.QUEUED.label: "info",
    Delivery.Status.SENDING.label: "warning",
    Delivery.Status.SENT.label: "success",
    Delivery.Status.FAILED.label: "danger",
    Delivery.Status.SUPPRESSED.label: "info",
    Delivery.Status.INVALID_TOKEN.label: "danger",
}
TEST_LABELS = {_("Test"): "warning", _("Live"): "success"}


def _url(name: str, *args: Any, query: dict[str, Any] | None = None) -> str:
    url = reverse(f"admin:{name}", args=args)
    return f"{url}?{urlencode(query)}" if query else url


def _test_label(is_test: bool) -> str:
    return str(_("Test") if is_test else _("Live"))


# While a run moves, its page refreshes this often (the JS poll, or <noscript> meta refresh).
PROGRESS_REFRESH_SECONDS = 5
# Retry failed and Resume change a run: the change permission, which the read-only
# admin itself never grants (ReadOnlyAdminMixin), is checked directly.
RUN_CHANGE_PERMISSION = "delivery.change_run"
RESULT_METRICS = (
    "deliveries",
    "sent",
    "opened",
    "open_rate",
    "clicked",
    "click_rate",
    "converted",
    "conversion_rate",
)


def _number(value: int | float) -> str:
    return str(formats.number_format(value, decimal_pos=0, use_l10n=True, force_grouping=True))


def _percent(rate: float | None) -> str:
    if rate is None:
        return "—"
    return f"{formats.number_format(rate * 100, decimal_pos=1, use_l10n=True)} %"


def _duration(seconds: float) -> str:
    minutes = round(max(0.0, seconds) / 60)
    if minutes < 1:
        return gettext("under a minute")
    if minutes < 60:
        return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return gettext("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}
    return ngettext("%(n)d day", "%(n)d days", round(hours / 24)) % {"n": round(hours / 24)}


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return str(formats.date_format(timezone.localtime(value), "SHORT_DATETIME_FORMAT"))


def _by_reason(counts: dict[str, int]) -> str:
    return " · ".join(f"{reason} {_number(n)}" for reason, n in counts.items()) or "—"


def progress_display(progress: RunProgress) -> dict[str, str]:
    """Every text the Run page shows for a progress, by the ``data-display`` key it fills.

    Rendered into the page by the template and sent to the page's script by the JSON
    view, so the two always agree and the script formats nothing itself.
    """
    display = {f"count-{status}": _number(n) for status, n in progress.counts.items()}
    provider = run_limit_per_minute(throttle_per_minute=None)
    limit = _number(progress.limit_per_minute)
    display |= {
        "status": progress.status_label,
        "total": _number(progress.total),
        "remaining": _number(progress.remaining),
        "done": f"{progress.done_percent} %",
        "rate": gettext("%(n)s a minute") % {"n": _number(progress.rate_per_minute)},
        "limit": (
            gettext("%(n)s a minute (provider limit)") % {"n": limit}
            if progress.limit_per_minute >= provider
            else gettext("%(n)s a minute (campaign throttle)") % {"n": limit}
        ),
        "eta": _duration(progress.eta_seconds) if progress.eta_seconds is not None else "—",
        "finish": _when(progress.expected_finish_at),
        "next_due": _when(progress.next_due_at),
        "suppressed": _by_reason(progress.suppressed_by_reason),
        "failed": _by_reason(progress.failed_by_reason),
    }
    for arm in progress.variants:
        values: dict[str, str] = {
            "deliveries": _number(arm.deliveries),
            "sent": _number(arm.sent) if not arm.is_control else "—",
            "opened": _number(arm.opened) if not arm.is_control else "—",
            "clicked": _number(arm.clicked) if not arm.is_control else "—",
            "converted": _number(arm.converted),
            "open_rate": _percent(arm.open_rate),
            "click_rate": _percent(arm.click_rate),
            "conversion_rate": _percent(arm.conversion_rate),
        }
        display |= {f"{arm.key}-{metric}": values[metric] for metric in RESULT_METRICS}
    return display


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: written by the heartbeat task that beat schedules."""

    list_display = ("name", "beat_at", "hostname", "count")
    readonly_fields = ("name", "beat_at", "hostname", "count")


class RunChangeList(ChangeList):
    """Attaches each listed run's per-status counts: one aggregate query for the page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        counts = run_delivery_counts(run_ids=[run.pk for run in self.result_list])
        for run in self.result_list:
            run.delivery_counts = counts.get(run.pk, {})


class TestSendForm(forms.Form):
    __test__ = False  # not a pytest test class

    variant: forms.ModelChoiceField[Variant] = forms.ModelChoiceField(
        label=_("Variant"),
        queryset=Variant.objects.none(),
        empty_label=None,
        widget=UnfoldAdminSelectWidget,
        help_text=_("A test sends one variant; send another test for each variant you want to see."),
    )
    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=[("", _("Each test subscriber's own language")), *settings.LANGUAGES],
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["variant"].queryset = campaign.variants.order_by("name", "id")  # type: ignore[attr-defined]


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Runs of campaigns, test sends included; the ledger is one click away."""

    list_display = (
        "id",
        "campaign",
        "occurrence",
        "kind",
        "status_label",
        "deliveries",
        "started_by",
        "finished_at",
    )
    list_filter = ("is_test", ("status", ChoicesDropdownFilter))
    list_filter_submit = True
    list_select_related = ("campaign", "started_by")
    search_fields = ("campaign__name",)
    search_help_text = _("Campaign name")
    fields = (
        "campaign",
        "occurrence",
        "is_test",
        "status",
        "started_by",
        "audience_size",
        "deliveries",
        "created_at",
        "planned_at",
        "finished_at",
    )
    readonly_fields = fields
    show_full_result_count = False
    list_per_page = 50
    change_form_template = "admin/delivery/run/change_form.html"
    change_form_outer_before_template = "admin/delivery/run/progress.html"

    class Media:
        css = {"all": ("delivery/run_progress.css",)}
        js = ("delivery/run_progress.js",)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "test-send/<int:campaign_id>/",
                wrap(self.test_send_view),
                name="delivery_run_test_send",
            ),
            path(
                "<path:object_id>/progress.json",
                wrap(require_GET(self.progress_json_view)),
                name="delivery_run_progress_json",
            ),
            path(
                "<path:object_id>/retry-failed/",
                wrap(self.retry_failed_view),
                name="delivery_run_retry_failed",
            ),
            path(
                "<path:object_id>/resume/",
                wrap(require_POST(self.resume_view)),
                name="delivery_run_resume",
            ),
            *super().get_urls(),
        ]

    # -- the change page: live progress, results, actions ---------------------------------

    def can_operate(self, request: HttpRequest) -> bool:
        """May retry and resume runs: the change permission on Run (the page stays read-only)."""
        return request.user.has_perm(RUN_CHANGE_PERMISSION)

    def _run(self, request: HttpRequest, object_id: str) -> Run:
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(gettext("This run does not exist (any more)."))
        return run

    def _change_url(self, run: Run) -> str:
        return _url("delivery_run_change", run.pk)

    def progress_context(self, request: HttpRequest, run: Run) -> dict[str, Any]:
        progress = run_progress(run_id=run.pk)
        if progress is None:  # deleted meanwhile
            return {}
        # The "Deliveries" field shows the same counts: no second aggregate query.
        run.delivery_counts = {status: n for status, n in progress.counts.items() if n}  # type: ignore[attr-defined]
        display = progress_display(progress)
        statuses = dict(Delivery.Status.choices)
        can_operate = self.can_operate(request)
        return {
            "progress": progress,
            "progress_display": display,
            "progress_counts": [
                (key, statuses[status], display[key])
                for status in progress.counts
                for key in [f"count-{status}"]
            ],
            "progress_results": [
                {
                    "key": arm.key,
                    "label": arm.label,
                    "is_control": arm.is_control,
                    "cells": [
                        (key, display[key]) for metric in RESULT_METRICS for key in [f"{arm.key}-{metric}"]
                    ],
                }
                for arm in progress.variants
            ],
            "progress_arms": ",".join(arm.key for arm in progress.variants),
            "progress_url": _url("delivery_run_progress_json", run.pk),
            "progress_refresh_seconds": PROGRESS_REFRESH_SECONDS,
            "can_retry_failed": (
                can_operate
                and not run.is_test
                and run.status in RETRYABLE
                and progress.counts[Delivery.Status.FAILED] > 0
            ),
            "retry_failed_url": _url("delivery_run_retry_failed", run.pk),
            "can_resume": can_operate and run.status == Run.Status.PAUSED,
            "resume_url": _url("delivery_run_resume", run.pk),
        }

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Run | None = None,
    ) -> Any:
        if obj is not None and obj.pk:
            context.update(self.progress_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @method_decorator(never_cache)
    def progress_json_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The page's script polls this: the progress and every text it displays."""
        run = self._run(request, object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        progress = run_progress(run_id=run.pk)
        if progress is None:
            raise Http404
        return JsonResponse(
            {
                "progress": progress.as_dict(),
                "display": progress_display(progress),
                "arms": ",".join(arm.key for arm in progress.variants),
            }
        )

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: "are you sure?" with the failed rows by reason; POST: re-queue them."""
        run = self._run(request, object_id)
        if not self.can_operate(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                requeued = run_retry_failed(run_id=run.pk, actor=request.user)
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                if requeued:
                    messages.success(
                        request,
                        ngettext(
                            "%(n)s failed delivery is queued again; it goes out with the next dispatch.",
                            "%(n)s failed deliveries are queued again; they go out with the next dispatch.",
                            requeued,
                        )
                        % {"n": _number(requeued)},
                    )
                else:
                    messages.info(request, gettext("This run has no failed deliveries to retry."))
            return HttpResponseRedirect(self._change_url(run))
        if request.method != "GET":
            return HttpResponse(status=405)
        progress = run_progress(run_id=run.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": run,
            "title": gettext("Retry the failed deliveries of “%(run)s”?") % {"run": run},
            "progress": progress,
            "failed": progress.counts[Delivery.Status.FAILED] if progress else 0,
            "failed_display": _number(progress.counts[Delivery.Status.FAILED]) if progress else "0",
            "change_url": self._change_url(run),
        }
        return TemplateResponse(request, "admin/delivery/run/retry_failed_confirmation.html", context)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: resume a run paused by a payload or auth error (after the fix)."""
        run = self._run(request, object_id)
        if not self.can_operate(request):
            raise PermissionDenied
        try:
            run = run_resume(run_id=run.pk, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, gettext("The run is sending again."))
        return HttpResponseRedirect(self._change_url(run))

    @display(description=_("Kind"), ordering="is_test", label=TEST_LABELS)
    def kind(self, obj: Run) -> str:
        return _test_label(obj.is_test)

    @display(description=_("Status"), ordering="status", label=RUN_STATUS_COLOURS)
    def status_label(self, obj: Run) -> str:
        return str(obj.get_status_display())

    @display(description=_("Deliveries"))
    def deliveries(self, obj: Run) -> SafeString | str:
        """Each status's count, linking to those ledger rows."""
        counts = getattr(obj, "delivery_counts", None)
        if counts is None:  # the change page: one run
            counts = run_delivery_counts(run_ids=[obj.pk]).get(obj.pk, {})
        if not counts:
            return "—"
        labels = dict(Delivery.Status.choices)
        return format_html_join(
            " · ",
            '<a href="{}">{} {}</a>',
            (
                (
                    _url(
                        "delivery_delivery_changelist",
                        query={"run__id__exact": obj.pk, "status__exact": status},
                    ),
                    counts[status],
                    labels[status].lower(),
                )
                for status in Delivery.Status.values
                if counts.get(status)
            ),
        )

    def test_send_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        """Pick a variant (and language) and send it to your own test devices."""
        if not request.user.has_perm("campaigns.send_test_campaign"):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        form = TestSendForm(request.POST or None, campaign=campaign)
        if request.method == "POST" and form.is_valid():
            try:
                run = test_send_create(
                    campaign=campaign,
                    user=request.user,  # type: ignore[arg-type]
                    variant=form.cleaned_data["variant"],
                    language=form.cleaned_data["language"] or None,
                )
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request,
                    format_html(
                        gettext(
                            'Test of “{}” is on its way to {} device(s). <a href="{}">See what was sent</a>.'
                        ),
                        campaign.name,
                        run.audience_size,
                        _url("delivery_outboxmessage_changelist", query={"delivery__run__id__exact": run.pk}),
                    ),
                )
                return HttpResponseRedirect(_url("delivery_run_change", run.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Send a test of “%(name)s”") % {"name": campaign.name},
            "opts": self.opts,
            "campaign": campaign,
            "form": form,
            "test_devices": TestDevice.objects.filter(user_id=cast(int, request.user.pk)).select_related(
                "device"
            ),
        }
        return TemplateResponse(request, "admin/delivery/run/test_send.html", context)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The ledger: one row per (run, device). Big: joins, no selects, no full counts."""

    list_display = (
        "id",
        "run",
        "device",
        "subscriber",
        "variant_name",
        "status_label",
        "reason",
        "scheduled_for",
        "sent_at",
    )
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("reason", FieldTextFilter),
        ("run__is_test", admin.BooleanFieldListFilter),
        ("run", AutocompleteSelectFilter),
        ("device", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    list_select_related = ("run__campaign", "device", "subscriber", "variant")
    search_fields = ("=device__token", "=subscriber__external_id", "=provider_message_id")
    search_help_text = _("Exact device token, subscriber external id or provider message id")
    fieldsets = (
        (None, {"fields": ("run", "device", "subscriber", "variant", "is_control", "language")}),
        (_("Delivery"), {"fields": ("status", "reason", "error", "scheduled_for", "claimed_at", "attempts")}),
        (
            _("Result"),
            {"fields": ("sent_at", "provider_message_id", "opened_at", "clicked_at", "converted_at")},
        ),
    )
    readonly_fields = (
        "run",
        "device",
        "subscriber",
        "variant",
        "is_control",
        "language",
        "status",
        "reason",
        "error",
        "scheduled_for",
        "claimed_at",
        "attempts",
        "sent_at",
        "provider_message_id",
        "opened_at",
        "clicked_at",
        "converted_at",
    )
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 50

    @display(description=_("Variant"), ordering="variant__name")
    def variant_name(self, obj: Delivery) -> str:
        if obj.is_control:
            return str(_("control"))
        return obj.variant.name if obj.variant is not None else "—"

    @display(description=_("Status"), ordering="status", label=DELIVERY_STATUS_COLOURS)
    def status_label(self, obj: Delivery) -> str:
        return str(obj.get_status_display())


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The device inbox: what the outbox backend "sent", exactly as FCM would get it."""

    list_display = ("created_at", "title", "device_inbox_link", "run_link", "kind", "message_id")
    list_filter = (
        ("device", AutocompleteSelectFilter),
        "is_test",
        ("delivery__run", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    list_select_related = ("device", "delivery__run__campaign")
    search_fields = ("=device__token", "title", "=message_id")
    search_help_text = _("Exact device token or message id, or words of the title")
    fields = (
        "message_id",
        "device_inbox_link",
        "delivery",
        "run_link",
        "kind",
        "created_at",
        "title",
        "body",
        "payload_pretty",
    )
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    list_per_page = 50

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "device/<int:device_id>/",
                self.admin_site.admin_view(self.device_inbox_view),
                name="delivery_outboxmessage_device_inbox",
            ),
            *super().get_urls(),
        ]

    @display(description=_("Device"), ordering="device")
    def device_inbox_link(self, obj: OutboxMessage) -> SafeString:
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            _url("delivery_outboxmessage_device_inbox", obj.device_id),
            _("This device's inbox"),
            obj.device,
        )

    @display(description=_("Run"))
    def run_link(self, obj: OutboxMessage) -> SafeString | str:
        if obj.delivery is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            _url(
                "delivery_outboxmessage_changelist", query={"delivery__run__id__exact": obj.delivery.run_id}
            ),
            obj.delivery.run,
        )

    @display(description=_("Kind"), ordering="is_test", label=TEST_LABELS)
    def kind(self, obj: OutboxMessage) -> str:
        return _test_label(obj.is_test)

    @display(description=_("Payload (FCM HTTP v1)"))
    def payload_pretty(self, obj: OutboxMessage) -> SafeString:
        # format_html escapes the JSON: titles and data are marketer/subscriber text.
        return format_html(
            '<pre class="whitespace-pre-wrap break-all text-xs font-mono" id="outbox-payload">{}</pre>',
            json.dumps(obj.payload, indent=2, ensure_ascii=False),
        )

    def device_inbox_view(self, request: HttpRequest, device_id: int) -> HttpResponse:
        """One device's newest messages, the way its owner would see them."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        device = get_object_or_404(Device.objects.select_related("subscriber"), pk=device_id)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Inbox of %(device)s") % {"device": device},
            "opts": self.opts,
            "device": device,
            "inbox": device_inbox(device_id=device.pk),
            "limit": INBOX_LIMIT,
            "list_url": _url("delivery_outboxmessage_changelist", query={"device__id__exact": device.pk}),
        }
        return TemplateResponse(request, "admin/delivery/outboxmessage/device_inbox.html", context)
