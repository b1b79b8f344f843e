"""Admin for delivery: runs, the ledger, the device inbox (outbox), test sends, heartbeats.

Everything here is read-only (``ReadOnlyAdminMixin``): runs, ledger rows and outbox
messages are written by the services and tasks only. Lists stay cheap on big tables:
related objects are joined (``list_select_related``), runs get their per-status
counts from one aggregate query per page, relation filters use autocomplete (no
select listing every device), and no page counts the whole table twice.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
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
from delivery.selectors import INBOX_LIMIT, device_inbox, run_delivery_counts
from delivery.services import test_send_create
from notifyhub.admin_mixins import ReadOnlyAdminMixin
from notifyhub.exceptions import ApplicationError

RUN_STATUS_COLOURS = {
    Run.Status.PENDING.label: "info",
    Run.Status.PLANNING.label: "info",
    Run.Status.SENDING.label: "warning",
    Run.Status.COMPLETED.label: "success",
    Run.Status.PARTIALLY_FAILED.label: "danger",
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

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "test-send/<int:campaign_id>/",
                self.admin_site.admin_view(self.test_send_view),
                name="delivery_run_test_send",
            ),
            *super().get_urls(),
        ]

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
