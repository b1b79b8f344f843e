"""Admin for delivery. Runs and the ledger arrive with the delivery engine (#5)."""

from __future__ import annotations

from django.contrib import admin
from unfold.admin import ModelAdmin

from delivery.models import Heartbeat
from notifyhub.admin_mixins import ReadOnlyAdminMixin


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdminMixin, ModelAdmin):
    """Read-only: written by the heartbeat task that beat schedules."""

    list_display = ("name", "beat_at", "hostname", "count")
    readonly_fields = ("name", "beat_at", "hostname", "count")
