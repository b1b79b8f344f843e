"""Admin for audiences: subscribers, devices, topics and the (read-only) consent ledger.

A subscriber's page also answers privacy requests: "Download data (JSON)" (anyone
who may view subscribers) and "Erase data" (change permission, after a confirmation
page), both through ``audiences.services`` and both written to the admin History.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportActionModelAdmin
from modeltranslation.admin import TabbedTranslationAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RelatedDropdownFilter
from unfold.contrib.import_export.forms import SelectableFieldsExportForm
from unfold.decorators import action, display
from unfold.enums import ActionVariant

from audiences.models import ConsentRecord, Device, Subscriber, Topic, TopicPreference
from audiences.resources import SubscriberResource
from audiences.services import (
    ConsentContext,
    PreferenceError,
    subscriber_erase,
    subscriber_export,
    subscriber_record_initial_consent,
    subscriber_update_preferences,
)
from notifyhub.admin_mixins import ReadOnlyAdminMixin

PREFERENCE_FIELDS = (
    "push_opt_in",
    "frequency_limit",
    "quiet_hours_start",
    "quiet_hours_end",
    "language",
    "paused_until",
)


class DeviceInline(TabularInline):
    model = Device
    extra = 0
    fields = ("platform", "token", "is_active", "is_test", "invalidation_reason", "last_seen_at")
    readonly_fields = ("invalidation_reason", "last_seen_at")
    show_change_link = True


class TopicPreferenceInline(TabularInline):
    """Shown read-only: topic choices change through the preference services."""

    model = TopicPreference
    extra = 0
    fields = ("topic", "opted_in", "updated_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ConsentRecordInline(TabularInline):
    """The subscriber's consent ledger, newest first, read-only (append-only by design)."""

    model = ConsentRecord
    extra = 0
    fields = ("created_at", "field", "topic", "old_value", "new_value", "source", "source_detail", "actor")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at", "-id")
    per_page = 20

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentRecord]:
        return super().get_queryset(request).select_related("topic", "actor")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Subscriber)
class SubscriberAdmin(ModelAdmin, ExportActionModelAdmin):
    resource_classes = [SubscriberResource]
    export_form_class = SelectableFieldsExportForm
    actions_list = ["import_csv"]
    actions_detail = ["export_data", "erase_data"]
    list_display = (
        "external_id",
        "full_name",
        "language",
        "country",
        "timezone",
        "opt_in_badge",
        "active_devices",
        "created_at",
    )
    list_filter = (
        "push_opt_in",
        ("language", ChoicesDropdownFilter),
        ("frequency_limit", ChoicesDropdownFilter),
        "created_at",
    )
    list_filter_submit = True
    search_fields = ("external_id", "email", "first_name", "last_name", "city")
    search_help_text = _("External id, email, name or city")
    readonly_fields = (
        "last_seen_at",
        "sessions_30d",
        "purchase_count",
        "total_spent",
        "last_purchase_at",
        "erased_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("external_id", "email", "first_name", "last_name")}),
        (_("Location and language"), {"fields": ("language", "timezone", "country", "city")}),
        (_("Profile"), {"fields": ("interests", "attributes")}),
        (
            _("Preferences"),
            {
                "fields": (
                    "push_opt_in",
                    "frequency_limit",
                    ("quiet_hours_start", "quiet_hours_end"),
                    "paused_until",
                ),
                "description": _("Every change here is written to the consent ledger."),
            },
        ),
        (
            _("Behaviour"),
            {
                "fields": (
                    "last_seen_at",
                    "sessions_30d",
                    "purchase_count",
                    "total_spent",
                    "last_purchase_at",
                ),
                "classes": ["tab"],
            },
        ),
        (_("Record"), {"fields": ("erased_at", "created_at", "updated_at"), "classes": ["tab"]}),
    )
    inlines = (DeviceInline, TopicPreferenceInline, ConsentRecordInline)
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscriber]:
        # A correlated subquery, not a JOIN + GROUP BY: PostgreSQL then counts devices
        # for the 50 rows on the page only, not for the whole audience before LIMIT.
        active = (
            Device.objects.filter(subscriber=OuterRef("pk"), is_active=True)
            .order_by()
            .values("subscriber")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(n_active_devices=Coalesce(Subquery(active), 0))

    @action(
        description=_("Import CSV"),
        url_path="import-csv",
        icon="upload_file",
        # A method, not "audiences.add_importjob": Unfold's system check looks dotted
        # permissions up in the database, which breaks `migrate` on a fresh database.
        permissions=["import_csv"],
    )
    def import_csv(self, request: HttpRequest) -> HttpResponseRedirect:
        """Imports have their own workspace (preview, progress); this is the way in."""
        return HttpResponseRedirect(reverse("admin:audiences_importjob_add"))

    def has_import_csv_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("audiences.add_importjob")

    # -- privacy requests: download and erase one subscriber's data --------------------

    def _subscriber(self, request: HttpRequest, object_id: str) -> Subscriber:
        subscriber = self.get_object(request, unquote(object_id))
        if subscriber is None:
            raise Http404(gettext("This subscriber does not exist (any more)."))
        return subscriber

    @action(
        description=_("Download data (JSON)"), url_path="export-data", icon="download", permissions=["view"]
    )
    def export_data(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Everything held about this person, as a JSON attachment (a subject access request)."""
        if request.method != "GET":
            return HttpResponse(status=405, headers={"Allow": "GET"})
        subscriber = self._subscriber(request, object_id)
        data = subscriber_export(subscriber=subscriber)
        self.log_change(request, subscriber, "Downloaded the subscriber's data (JSON).")
        response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
        # Named by the row id: an external id or a name would end up in download folders and logs.
        response["Content-Disposition"] = f'attachment; filename="subscriber-{subscriber.pk}-data.json"'
        response["Cache-Control"] = "no-store"
        return response

    @action(
        description=_("Erase data"),
        url_path="erase-data",
        icon="delete_forever",
        variant=ActionVariant.DANGER,
        permissions=["change"],
    )
    def erase_data(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: "are you sure?"; POST: erase (idempotent), then back to the subscriber's page."""
        subscriber = self._subscriber(request, object_id)
        change_url = reverse("admin:audiences_subscriber_change", args=[subscriber.pk])
        if request.method == "POST":
            if subscriber.erased_at is not None:
                messages.info(request, gettext("This subscriber's data was already erased."))
                return HttpResponseRedirect(change_url)
            subscriber_erase(
                subscriber=subscriber,
                context=ConsentContext(
                    source=ConsentRecord.Source.ADMIN,
                    actor=request.user if request.user.is_authenticated else None,
                    source_detail="admin: erase data",
                ),
            )
            # Logged after erasing, so the History names the suppression record, not the person.
            self.log_change(request, subscriber, "Erased the subscriber's personal data.")
            messages.success(
                request,
                gettext(
                    "The subscriber's personal data and device tokens are erased. "
                    "A suppression record stays so that they are never messaged again."
                ),
            )
            return HttpResponseRedirect(change_url)
        if request.method != "GET":
            return HttpResponse(status=405, headers={"Allow": "GET, POST"})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": subscriber,
            "title": gettext("Erase this subscriber's data?"),
            "already_erased": subscriber.erased_at is not None,
            "devices": subscriber.devices.count(),
            "events": subscriber.events.count(),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/audiences/subscriber/erase_confirmation.html", context)

    @display(description=_("Name"))
    def full_name(self, obj: Subscriber) -> str:
        return f"{obj.first_name} {obj.last_name}".strip() or "—"

    @display(description=_("Push"), label={_("Opted in"): "success", _("Opted out"): "danger"})
    def opt_in_badge(self, obj: Subscriber) -> str:
        return str(_("Opted in") if obj.push_opt_in else _("Opted out"))

    @display(description=_("Active devices"), ordering="n_active_devices")
    def active_devices(self, obj: Subscriber) -> int:
        return int(getattr(obj, "n_active_devices", 0))

    def save_model(
        self, request: HttpRequest, obj: Subscriber, form: ModelForm[Subscriber], change: bool
    ) -> None:
        """Profile fields save normally; preference fields go through the consent service."""
        context = ConsentContext(
            source=ConsentRecord.Source.ADMIN,
            actor=request.user if request.user.is_authenticated else None,
            source_detail="admin",
        )
        if not change:
            super().save_model(request, obj, form, change)
            subscriber_record_initial_consent(subscribers=[obj], context=context)
            return
        wanted = {field: getattr(obj, field) for field in PREFERENCE_FIELDS}
        stored = Subscriber.objects.only(*PREFERENCE_FIELDS).get(pk=obj.pk)
        for field in PREFERENCE_FIELDS:
            setattr(obj, field, getattr(stored, field))
        super().save_model(request, obj, form, change)
        quiet = (
            (wanted["quiet_hours_start"], wanted["quiet_hours_end"])
            if wanted["quiet_hours_start"] is not None and wanted["quiet_hours_end"] is not None
            else None
        )
        try:
            subscriber_update_preferences(
                subscriber=obj,
                context=context,
                push_opt_in=wanted["push_opt_in"],
                frequency_limit=wanted["frequency_limit"],
                quiet_hours=quiet,
                language=wanted["language"],
                paused_until=wanted["paused_until"],
            )
        except PreferenceError as exc:
            messages.error(request, exc.message)


@admin.register(Device)
class DeviceAdmin(ModelAdmin):
    list_display = (
        "__str__",
        "subscriber",
        "platform",
        "is_active",
        "is_test",
        "invalidation_reason",
        "created_at",
    )
    list_filter = (
        ("platform", ChoicesDropdownFilter),
        "is_active",
        "is_test",
        ("invalidation_reason", ChoicesDropdownFilter),
    )
    list_filter_submit = True
    list_select_related = ("subscriber",)
    search_fields = ("token", "subscriber__external_id", "subscriber__email")
    autocomplete_fields = ("subscriber",)
    readonly_fields = ("invalidated_at", "invalidation_reason", "created_at")
    show_full_result_count = False


@admin.register(Topic)
class TopicAdmin(ModelAdmin, TabbedTranslationAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "default_opt_in", "is_transactional", "is_active", "sort_order")
    list_editable = ("sort_order",)
    prepopulated_fields = {"slug": ("name_en",)}
    search_fields = ("slug", "name")


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """The consent ledger: readable by whoever may view it, writable by nobody."""

    list_display = ("created_at", "subscriber", "field", "topic", "old_value", "new_value", "source", "actor")
    list_filter = (
        ("source", ChoicesDropdownFilter),
        "field",
        ("topic", RelatedDropdownFilter),
        "created_at",
    )
    list_filter_submit = True
    list_select_related = ("subscriber", "topic", "actor")
    search_fields = ("subscriber__external_id", "source_detail")
    date_hierarchy = "created_at"
    show_full_result_count = False
