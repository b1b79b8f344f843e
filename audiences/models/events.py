"""Custom attribute types and behaviour events."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from audiences.models.subscribers import Subscriber


class AttributeDefinition(models.Model):
    """A declared custom attribute: its key in ``Subscriber.attributes`` and its type.

    Types drive the segment builder's operators and the importer's parsing; keys seen
    in an import without a declaration get an inferred definition.
    """

    class Type(models.TextChoices):
        TEXT = "text", _("Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        BOOLEAN = "boolean", _("Yes/no")

    key = models.SlugField(max_length=64, unique=True, allow_unicode=False)
    label = models.CharField(max_length=120, blank=True)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.TEXT)
    inferred = models.BooleanField(default=False, help_text=_("Created by an import that guessed the type."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=Q(type__in=["text", "number", "date", "boolean"]),
                name="attribute_type_valid",
            )
        ]

    def __str__(self) -> str:
        return self.label or self.key


class Event(models.Model):
    """Something a subscriber did (``purchase``, ``add_to_cart``…), reported by a client app.

    ``idempotency_key`` is unique: a client may resend a batch and nothing is counted
    twice. Behaviour aggregates on Subscriber are updated in the same transaction.
    """

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="events")
    name = models.CharField(max_length=100)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    idempotency_key = models.CharField(max_length=128, unique=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["subscriber", "name", "occurred_at"]),
            models.Index(fields=["name", "occurred_at"]),
            # Segments "did X at least N times in D days": the window's subscriber ids
            # come from an index-only scan, without visiting the event rows.
            models.Index(
                fields=["name", "occurred_at"], include=["subscriber"], name="event_name_time_subscriber_idx"
            ),
        ]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="event_name_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} @ {self.occurred_at:%Y-%m-%d %H:%M}"
