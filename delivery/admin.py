"""Admin for delivery. Runs and the ledger arrive with the delivery engine (#5)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin

from delivery.models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(ModelAdmin):
    """Read-only: written by the heartbeat task that beat schedules."""

    list_display = ("name", "beat_at", "hostname", "count")
    readonly_fields = ("name", "beat_at", "hostname", "count")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
