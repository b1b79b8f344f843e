"""The campaign workspace: the campaign form with its variants, and the status history.

The form edits what a campaign says and to whom; it never changes the status. Every
status change is a button on the change page (``campaigns.admin.views``) that
calls a service of ``campaigns.services``. After each save ``campaign_save`` keeps the
django-celery-beat task in step with an edited schedule.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from modeltranslation import settings as mt_settings
from modeltranslation.admin import TranslationStackedInline
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RelatedDropdownFilter
from unfold.decorators import action, display
from unfold.overrides import FORMFIELD_OVERRIDES_INLINE

from audiences.languages import is_rtl
from campaigns.admin.forms import CampaignForm, VariantInlineForm
from campaigns.admin.preview import language_report
from campaigns.admin.views import CampaignViewsMixin, schedule_summary
from campaigns.messages import variant_texts
from campaigns.models import Campaign, CampaignStatusChange, Variant
from campaigns.selectors import campaign_audience_size, variant_languages
from campaigns.services import campaign_save
from notifyhub.admin_mixins import ReadOnlyAdminMixin
from notifyhub.exceptions import ApplicationError

S = Campaign.Status
STATUS_COLOURS = {
    S.IN_REVIEW: "warning",
    S.APPROVED: "info",
    S.SCHEDULED: "info",
    S.RUNNING: "success",
    S.COMPLETED: "success",
    S.PAUSED: "warning",
    S.CANCELLED: "danger",
}
SCHEDULE_FIELDS = (
    "schedule_type",
    "send_at",
    "local_date",
    "local_time",
    "late_policy",
    "fallback_timezone",
    "schedule_timezone",
    "weekdays",
    "cron_expression",
    "ends_at",
)
# Shown only for the schedule types they belong to (Unfold's conditional fields,
# Alpine.js). ``typeof`` keeps a read-only schedule (no ``schedule_type`` input) quiet.
_ANY = "typeof schedule_type === 'undefined'"


def _when(*types: str) -> str:
    return " || ".join([_ANY, *(f"schedule_type == '{t}'" for t in types)])


CONDITIONAL_SCHEDULE_FIELDS = {
    "send_at": _when("at"),
    "local_date": _when("local_time"),
    "local_time": _when("local_time", "daily", "weekly"),
    "late_policy": _when("local_time"),
    "fallback_timezone": _when("local_time"),
    "schedule_timezone": _when("daily", "weekly", "cron"),
    "weekdays": _when("weekly"),
    "cron_expression": _when("cron"),
    "ends_at": _when("daily", "weekly", "cron"),
}
VARIANT_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ArchivedFilter(admin.SimpleListFilter):
    """Archived campaigns are hidden unless asked for."""

    title = _("archived")
    parameter_name = "archived"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("no", _("Not archived")), ("yes", _("Archived")), ("all", _("All"))]

    def choices(self, changelist: Any) -> Any:
        current = self.value() or "no"
        for value, title in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value() or "no"
        if value == "no":
            return queryset.filter(archived_at__isnull=True)
        if value == "yes":
            return queryset.filter(archived_at__isnull=False)
        return queryset


class VariantInline(StackedInline, TranslationStackedInline):  # type: ignore[misc,type-arg]
    """Variants with their title and body in language tabs (modeltranslation + jQuery UI, local)."""

    model = Variant
    form = VariantInlineForm
    # Image and icon addresses: https unless written otherwise (Django 6's default).
    formfield_overrides = {
        **FORMFIELD_OVERRIDES_INLINE,
        models.URLField: {**FORMFIELD_OVERRIDES_INLINE[models.URLField], "assume_scheme": "https"},
    }
    extra = 0
    min_num = 0
    fieldsets = (
        (None, {"fields": ("name", "weight", "title", "body")}),
        (_("Click and image"), {"fields": ("click_action", "click_url", "image_url", "data")}),
        (
            _("Platform options"),
            {
                "classes": ["collapse"],
                "fields": (
                    ("android_channel_id", "android_icon"),
                    ("ios_sound", "ios_badge"),
                    "web_icon",
                    "web_actions",
                ),
            },
        ),
    )

    class Media:
        # What modeltranslation's TabbedDjangoJqueryTranslationAdmin loads, for an
        # inline; JQUERY_UI_URL points at static/vendor (no CDN). variant_tabs.js adds
        # the tabs to variants added with “Add another”.
        js = (
            "admin/js/jquery.init.js",
            "modeltranslation/js/force_jquery.js",
            mt_settings.JQUERY_UI_URL,
            "modeltranslation/js/tabbed_translation_fields.js",
            "campaigns/variant_tabs.js",
        )
        css = {"all": ("modeltranslation/css/tabbed_translation_fields.css",)}

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not obj.is_editable:
            # Locked: the written languages only, not sixteen mostly empty fields.
            return ((None, {"fields": ("name", "weight", "texts")}), *self.fieldsets[1:])
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not obj.is_editable:
            fields.append("texts")
        return fields

    @display(description=_("Texts"))
    def texts(self, variant: Variant) -> str:
        written = [code for code, _name in settings.LANGUAGES if code in variant_languages(variant=variant)]
        if not written:
            return "—"
        return format_html_join(
            "",
            '<p class="nh-variant-text" lang="{}" dir="{}"><strong>{}</strong> · {} — {}</p>',
            (
                (
                    code,
                    "rtl" if is_rtl(code) else "ltr",
                    code.upper(),
                    *variant_texts(variant=variant, language=code),
                )
                for code in written
            ),
        )

    def get_extra(self, request: HttpRequest, obj: Campaign | None = None, **kwargs: Any) -> int:
        if obj is None:
            return 2  # variants A and B; an untouched form is ignored
        return 0 if obj.variants.exists() or not obj.is_editable else 1

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (obj is None or obj.is_editable) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (obj is None or obj.is_editable) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (obj is None or obj.is_editable) and super().has_delete_permission(request, obj)


class StatusChangeInline(ReadOnlyAdminMixin, TabularInline):
    model = CampaignStatusChange
    verbose_name = _("status change")
    verbose_name_plural = _("status history")
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "actor", "note")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    per_page = 10


@admin.register(Campaign)
class CampaignAdmin(CampaignViewsMixin, ModelAdmin):
    form = CampaignForm
    inlines = (VariantInline, StatusChangeInline)
    list_display = (
        "name",
        "status_badge",
        "kind",
        "topic",
        "schedule_summary",
        "audience",
        "updated_at",
    )
    list_filter = (
        ("status", ChoicesDropdownFilter),
        "kind",
        ("topic", RelatedDropdownFilter),
        ArchivedFilter,
    )
    list_filter_submit = True
    list_select_related = ("topic",)
    search_fields = ("name",)
    autocomplete_fields = ("include_segments", "exclude_segments")
    actions = ["duplicate_selected", "archive_selected"]
    conditional_fields = CONDITIONAL_SCHEDULE_FIELDS
    change_form_template = "admin/campaigns/campaign/change_form.html"
    change_form_outer_before_template = "admin/campaigns/campaign/workspace.html"
    show_full_result_count = False
    readonly_fields = (
        "audience_estimate",
        "beat_task",
        "recent_runs",
        "created_by",
        "approved_by",
        "approved_at",
        "archived_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (
            _("Message basics"),
            {"fields": ("name", "description", "topic", "kind", "default_language")},
        ),
        (_("Audience"), {"fields": ("include_segments", "exclude_segments", "audience_estimate")}),
        (_("Schedule"), {"fields": (*SCHEDULE_FIELDS, "beat_task", "recent_runs")}),
        (
            _("A/B test"),
            {"fields": ("ab_mode", "control_percent", "ab_test_percent", "ab_window_hours", "ab_metric")},
        ),
        (
            _("Delivery options"),
            {
                "fields": (
                    "throttle_per_minute",
                    "ttl_seconds",
                    "priority",
                    ("quiet_hours_start", "quiet_hours_end"),
                    "quiet_hours_policy",
                    "cap_policy",
                )
            },
        ),
        (_("Conversion"), {"fields": ("conversion_event", "conversion_window_hours")}),
        (
            _("Record"),
            {
                "classes": ["collapse"],
                "fields": (
                    "created_by",
                    "approved_by",
                    "approved_at",
                    "archived_at",
                    "created_at",
                    "updated_at",
                ),
            },
        ),
    )

    class Media:
        css = {"all": ("campaigns/campaigns.css",)}

    # -- form ------------------------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fixed = list(self.readonly_fields)
        if obj is None or obj.is_editable:
            return fixed
        editable = set(SCHEDULE_FIELDS) if obj.status == S.SCHEDULED else set()
        form_fields = [f.name for f in Campaign._meta.get_fields() if getattr(f, "editable", False)]
        form_fields += [f.name for f in Campaign._meta.many_to_many]
        return fixed + [name for name in form_fields if name not in editable and name not in fixed]

    def get_inlines(self, request: HttpRequest, obj: Campaign | None) -> Any:
        return self.inlines if obj is not None else (VariantInline,)

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Campaign, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, VariantInline):
            # New variants are offered as A, B, … after the names already taken.
            taken = set(obj.variants.values_list("name", flat=True)) if obj.pk else set()
            kwargs["initial"] = [{"name": letter} for letter in VARIANT_NAMES if letter not in taken]
        return kwargs

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            # The admin's transaction was rolled back; nothing was saved.
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Campaign | None = None,
    ) -> Any:
        if obj is not None and obj.pk:
            context.update(self.workspace_context(request, obj))
            if not obj.is_editable and obj.status != S.SCHEDULED:
                # Nothing on the form can change; the buttons above move it on.
                context.update(
                    {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
                )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change and request.user.is_authenticated:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the variants and segments are saved: the beat task follows an edited
        # schedule. An ApplicationError rolls the whole save back (changeform_view).
        campaign_save(campaign=form.instance, actor=request.user)

    def get_urls(self) -> list[URLPattern]:
        return [*self.transition_urls(), *super().get_urls()]

    # -- list and read-only displays ---------------------------------------------

    @display(description=_("Status"), label=STATUS_COLOURS, ordering="status")
    def status_badge(self, obj: Campaign) -> tuple[str, str]:
        label = str(obj.get_status_display())
        if obj.archived_at is not None:
            label = f"{label} · {_('archived')}"
        return obj.status, label

    @display(description=_("Schedule"))
    def schedule_summary(self, obj: Campaign) -> str:
        return schedule_summary(obj)

    @display(description=_("Audience"), ordering="audience_size")
    def audience(self, obj: Campaign) -> str:
        return "—" if obj.audience_size is None else f"{obj.audience_size:,}"

    @display(description=_("Audience now"))
    def audience_estimate(self, obj: Campaign) -> str:
        if obj.pk is None:
            return str(_("Save the campaign to see its audience."))
        size = campaign_audience_size(campaign=obj)
        return str(
            _("%(n)s reachable subscribers (opted in to push and to the topic, with an active device)")
        ) % {"n": f"{size:,}"}

    @display(description=_("Beat task"))
    def beat_task(self, obj: Campaign) -> str:
        if obj.periodic_task_id is None:
            return "—"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}" class="text-primary-600">{}</a>', url, obj.periodic_task)

    @display(description=_("Runs"))
    def recent_runs(self, obj: Campaign) -> str:
        """The latest runs, each linking to its page (live counts, rate, ETA, retry)."""
        if obj.pk is None:
            return "—"
        # Through the reverse relation: the admin composes; campaigns code does not
        # import delivery's models.
        runs = list(obj.runs.filter(is_test=False).order_by("-occurrence")[:5])  # type: ignore[attr-defined]
        if not runs:
            return str(_("No run yet."))
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}" class="text-primary-600">{} UTC</a> · {}',
            (
                (
                    reverse("admin:delivery_run_change", args=[run.pk]),
                    f"{run.occurrence:%Y-%m-%d %H:%M}",
                    run.get_status_display(),
                )
                for run in runs
            ),
        )

    def workspace_context(self, request: HttpRequest, obj: Campaign) -> dict[str, Any]:
        report = language_report(campaign=obj) if obj.variants.exists() else None
        return {
            "campaign_buttons": self.available_buttons(request, obj),
            "language_report": report,
            "preview_url": reverse("admin:campaigns_campaign_preview", args=[obj.pk]),
            "can_send_test": self.can_send_test(request, obj) and obj.variants.exists(),
            "send_test_url": reverse("admin:campaigns_campaign_send_test", args=[obj.pk]),
        }

    # -- changelist actions --------------------------------------------------------

    @action(description=_("Duplicate the selected campaigns"), permissions=["add"])
    def duplicate_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.duplicate(request, campaign)

    @action(description=_("Archive the selected campaigns"), permissions=["change"])
    def archive_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            self.archive(request, campaign)


@admin.register(CampaignStatusChange)
class CampaignStatusChangeAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Written only by the lifecycle services: readable, never editable."""

    list_display = ("created_at", "campaign", "from_status", "to_status", "actor", "note")
    list_filter = (("to_status", ChoicesDropdownFilter),)
    list_filter_submit = True
    list_select_related = ("campaign", "actor")
    search_fields = ("campaign__name", "note")
    date_hierarchy = "created_at"
    show_full_result_count = False
