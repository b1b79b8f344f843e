"""Admin for audiences: subscribers, devices, topics and the (read-only) consent ledger."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportActionModelAdmin
from modeltranslation.admin import TabbedTranslationAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RelatedDropdownFilter
from unfold.contrib.import_export.forms import SelectableFieldsExportForm
from unfold.decorators import action, display

from audiences.models import ConsentRecord, Device, Subscriber, Topic, TopicPreference
from audiences.resources import SubscriberResource
from audiences.services import (
    ConsentContext,
    PreferenceError,
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
    model = ConsentRecord
    extra = 0
    fields = ("created_at", "field", "topic", "old_value", "new_value", "source", "source_detail", "actor")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Subscriber)
class SubscriberAdmin(ModelAdmin, ExportActionModelAdmin):
    resource_classes = [SubscriberResource]
    export_form_class = SelectableFieldsExportForm
    actions_list = ["import_csv"]
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
