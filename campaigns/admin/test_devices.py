"""Test devices: where “Send test to my devices” goes.

Staff register their own phones and browsers (a device of any subscriber, picked by
autocomplete). A superuser sees and manages everyone's; anyone else only their own,
and the user is always themselves.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns.models import TestDevice


@admin.register(TestDevice)
class TestDeviceAdmin(ModelAdmin):
    list_display = ("__str__", "device", "platform", "active", "user", "created_at")
    list_select_related = ("device", "user")
    search_fields = ("label", "device__token", "user__username")
    autocomplete_fields = ("device",)
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TestDevice]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user_id=request.user.pk)

    def get_fields(self, request: HttpRequest, obj: TestDevice | None = None) -> Any:
        if request.user.is_superuser:
            return ("user", "device", "label", "created_at")
        return ("device", "label", "created_at")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().get_changeform_initial_data(request), "user": request.user.pk}

    def save_model(self, request: HttpRequest, obj: TestDevice, form: Any, change: bool) -> None:
        if not request.user.is_superuser or obj.user_id is None:
            obj.user_id = cast(int, request.user.pk)
        super().save_model(request, obj, form, change)

    def get_form(
        self, request: HttpRequest, obj: TestDevice | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if request.user.is_superuser:
            return form  # "user" is on the form: Django checks (user, device) itself
        owner_id = cast(int, request.user.pk)

        class OwnForm(form):  # type: ignore[misc,valid-type]
            """Without a "user" field Django skips the (user, device) check; do it here."""

            def clean(self) -> dict[str, Any]:
                data = super().clean() or {}
                device = data.get("device")
                mine = TestDevice.objects.filter(user_id=owner_id, device=device)
                if device is not None and mine.exclude(pk=self.instance.pk).exists():
                    self.add_error("device", _("This device is already one of your test devices."))
                return data

        return OwnForm

    @display(description=_("Platform"))
    def platform(self, obj: TestDevice) -> str:
        return str(obj.device.get_platform_display())

    @display(description=_("Active"), boolean=True)
    def active(self, obj: TestDevice) -> bool:
        return obj.device.is_active
