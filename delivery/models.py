"""Delivery models: runs, the delivery ledger, the outbox, and the liveness record."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Heartbeat(models.Model):
    """Last sign of life of a component ("beat→worker"), written by a periodic task.

    Beat schedules ``delivery.tasks.heartbeat``; a worker runs it and stamps this row,
    so one fresh row proves beat, the broker and a worker all work.
    """

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Run(models.Model):
    """One execution of a campaign (a recurring campaign has many; a test send is one too).

    ``occurrence`` is the moment the run is for (the clocked time, or the cron tick's
    minute). It is unique per campaign for real runs, so a schedule that fires twice
    (two beat processes, a redelivered task) still starts one run.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PLANNING = "planning", _("Planning")
        SENDING = "sending", _("Sending")
        COMPLETED = "completed", _("Completed")
        PARTIALLY_FAILED = "partially_failed", _("Partially failed")
        PAUSED = "paused", _("Paused (needs attention)")
        CANCELLED = "cancelled", _("Cancelled")

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.PROTECT, related_name="runs")
    occurrence = models.DateTimeField()
    is_test = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    audience_size = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, help_text=_("Why the run stopped (e.g. a payload or auth error)."))
    created_at = models.DateTimeField(auto_now_add=True)
    planned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "occurrence"], condition=Q(is_test=False), name="run_once_per_occurrence"
            ),
        ]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        label = _("test") if self.is_test else f"{self.occurrence:%Y-%m-%d %H:%M}"
        return f"{self.campaign} · {label}"


class Delivery(models.Model):
    """The ledger: one row per (run, device). What makes sends idempotent."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        SUPPRESSED = "suppressed", _("Suppressed")
        INVALID_TOKEN = "invalid_token", _("Invalid token")

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="deliveries")
    device = models.ForeignKey("audiences.Device", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Indexed by (subscriber, sent_at) below: frequency caps count a subscriber's recent sends.
    subscriber = models.ForeignKey(
        "audiences.Subscriber", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    variant = models.ForeignKey(
        "campaigns.Variant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    is_control = models.BooleanField(default=False)
    language = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=40, blank=True, help_text=_("Why suppressed or failed."))
    scheduled_for = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["run", "device"], name="delivery_once_per_run_device")]
        indexes = [
            models.Index(fields=["run", "status"]),
            models.Index(fields=["scheduled_for"], condition=Q(status="queued"), name="delivery_due_idx"),
            models.Index(fields=["subscriber", "sent_at"], name="delivery_subscriber_sent_idx"),
            # The per-minute throttle counts a run's rows claimed in the last minute.
            models.Index(fields=["run", "claimed_at"], name="delivery_run_claimed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.device_id}: {self.status}"


class OutboxMessage(models.Model):
    """A message the ``outbox`` push backend "sent": stored fully rendered (the device inbox)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    device = models.ForeignKey("audiences.Device", on_delete=models.CASCADE, related_name="outbox_messages")
    message_id = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=1000, blank=True)
    body = models.TextField(blank=True)
    payload = models.JSONField(help_text=_("The message as it would go to FCM."))
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["device", "-created_at"])]

    def __str__(self) -> str:
        return self.title or self.message_id
