"""Admin for the client API: API keys (shown once, revoked with confirmation) and events.

Creating a key answers the add form with a one-time page showing the plaintext
(rendered straight into that response — never stored, never put in a message or
the session); afterwards only its prefix is ever shown. Keys are revoked, not
deleted, so that "which key did this" stays answerable.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import DropdownFilter
from unfold.decorators import action, display

from audiences.models import ApiKey, Event
from audiences.services.api_keys import api_key_create, api_key_revoke
from notifyhub.admin_filters import AwareRangeDateTimeFilter
from notifyhub.admin_mixins import ReadOnlyAdminMixin


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    list_display = ("name", "prefix_display", "status", "rate_limit_per_minute", "created_at", "last_used_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_selected"]
    list_select_related = ("created_by",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "rate_limit_per_minute"]
        return [
            "name",
            "prefix",
            "rate_limit_per_minute",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @display(description=_("Key"), ordering="prefix")
    def prefix_display(self, obj: ApiKey) -> str:
        return f"{obj.prefix}_…"

    @display(description=_("Status"), label={_("Active"): "success", _("Revoked"): "danger"})
    def status(self, obj: ApiKey) -> str:
        return str(_("Active") if obj.is_active else _("Revoked"))

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm[ApiKey], change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = api_key_create(
            name=obj.name,
            rate_limit_per_minute=obj.rate_limit_per_minute,
            created_by=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
        )
        stored = created.api_key
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = (
            stored.pk,
            stored.prefix,
            stored.key_hash,
            stored.created_at,
        )
        obj.created_by_id = stored.created_by_id
        # Lives only on this request object, for response_add to render once.
        request._notifyhub_plaintext_key = created.plaintext  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = getattr(request, "_notifyhub_plaintext_key", None)
        if plaintext is None:  # pragma: no cover - save_model always sets it
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": _("API key created"),
            "opts": self.opts,
            "api_key": obj,
            "plaintext": plaintext,
        }
        response = TemplateResponse(request, "admin/audiences/apikey/key_created.html", context)
        # The page holds a secret: no cache may keep it (the admin adds its own never_cache too).
        response["Cache-Control"] = "no-store"
        return response

    @action(description=_("Revoke selected API keys"))
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        """Destructive, so it asks first (like delete_selected), then revokes."""
        active = queryset.filter(revoked_at__isnull=True)
        if request.POST.get("post") == "yes":
            count = sum(api_key_revoke(api_key=key) for key in active)
            self.message_user(
                request,
                ngettext("Revoked %(count)d API key.", "Revoked %(count)d API keys.", count)
                % {"count": count},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revoke API keys?"),
            "opts": self.opts,
            "keys": list(active),
            "already_revoked": queryset.count() - active.count(),
            "queryset": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/audiences/apikey/revoke_confirmation.html", context)


class EventNameFilter(DropdownFilter):
    title = _("Event")
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = Event.objects.order_by("name").values_list("name", flat=True).distinct()[:200]
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        value = self.value()
        return queryset.filter(name=value) if value else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: events come from client apps through the API, never from the admin."""

    list_display = ("name", "subscriber", "occurred_at", "received_at", "idempotency_key")
    list_filter = (EventNameFilter, ("occurred_at", AwareRangeDateTimeFilter))
    list_filter_submit = True
    list_select_related = ("subscriber",)
    search_fields = ("subscriber__external_id", "idempotency_key")
    search_help_text = _("Subscriber external id or idempotency key")
    readonly_fields = ("subscriber", "name", "properties", "occurred_at", "received_at", "idempotency_key")
    raw_id_fields = ("subscriber",)
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-occurred_at", "-id")
