"""Segments: rule trees compiled to SQL, or static member lists."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from audiences.models.subscribers import Subscriber


class Segment(models.Model):
    """A slice of the audience: a rule tree compiled to one SQL query, or a static list."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", _("Rules")
        STATIC = "static", _("Static list")

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DYNAMIC)
    # The rule tree (see audiences/segments); validated by the segment services.
    rules = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Last computed size (the live estimate is computed on demand).
    last_count = models.PositiveIntegerField(null=True, blank=True)
    last_reachable = models.PositiveIntegerField(null=True, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["dynamic", "static"]), name="segment_kind_valid")
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    """Explicit membership of a static segment."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "subscriber"], name="segment_member_unique")
        ]
        indexes = [models.Index(fields=["subscriber"])]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.subscriber_id}"
