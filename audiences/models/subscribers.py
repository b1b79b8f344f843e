"""Who we talk to: subscribers, their devices, topics, preferences and consent.

Preferences live on the subscriber row (global opt-in, frequency limit, quiet hours,
language, pause) plus one ``TopicPreference`` row per explicit topic choice, so that
segment and suppression queries stay single-table SQL. Every change to them goes
through ``audiences.services`` and appends a ``ConsentRecord``.
"""

from __future__ import annotations

import zoneinfo
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

LANGUAGE_CHOICES = [(code, name) for code, name in settings.LANGUAGES]

country_validator = RegexValidator(
    r"^[A-Z]{2}$", _("Use a two-letter ISO 3166-1 country code, e.g. DE or BR.")
)


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("%(value)s is not an IANA time zone; use a name like Europe/Berlin."),
            params={"value": value},
            code="invalid_timezone",
        )


class Topic(models.Model):
    """A notification category subscribers opt in or out of ("Offers", "Order updates")."""

    slug = models.SlugField(max_length=64, unique=True)
    # name and description are translated (audiences/translation.py).
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    default_opt_in = models.BooleanField(
        default=True,
        help_text=_("Whether subscribers who never chose are opted in."),
    )
    is_transactional = models.BooleanField(
        default=False,
        help_text=_("Transactional topics (order updates…) are exempt from marketing caps."),
    )
    max_per_day = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=_("At most this many messages of this topic per subscriber a day.")
    )
    max_per_week = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=_("At most this many messages of this topic per subscriber a week.")
    )
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[Topic]] = models.Manager()

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name


class SubscriberQuerySet(models.QuerySet["Subscriber"]):
    def reachable(self) -> SubscriberQuerySet:
        """Opted in to push, not erased, and with at least one active device."""
        return self.filter(push_opt_in=True, erased_at__isnull=True, devices__is_active=True).distinct()


class Subscriber(models.Model):
    class FrequencyLimit(models.TextChoices):
        NONE = "none", _("No limit")
        DAILY = "daily", _("At most one a day")
        WEEKLY = "weekly", _("At most one a week")

    # Unique through Meta.constraints, not unique=True: on PostgreSQL the latter adds a
    # second, varchar_pattern_ops index that no query uses and every import maintains.
    external_id = models.CharField(max_length=255, help_text=_("The client app's id for this user."))
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    language = models.CharField(max_length=10, choices=LANGUAGE_CHOICES, default=settings.LANGUAGE_CODE)
    timezone = models.CharField(
        max_length=64, default="UTC", validators=[validate_timezone], help_text=_("IANA name")
    )
    country = models.CharField(
        max_length=2, blank=True, validators=[country_validator], help_text=_("ISO 3166-1 alpha-2")
    )
    city = models.CharField(max_length=120, blank=True)
    interests = models.JSONField(default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)

    # Behaviour aggregates, kept current by events so segments stay fast SQL.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    sessions_30d = models.PositiveIntegerField(default=0)
    purchase_count = models.PositiveIntegerField(default=0)
    total_spent = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    last_purchase_at = models.DateTimeField(null=True, blank=True)

    # Preferences (change them only through audiences.services).
    push_opt_in = models.BooleanField(default=True)
    frequency_limit = models.CharField(
        max_length=10, choices=FrequencyLimit.choices, default=FrequencyLimit.NONE
    )
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)

    erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["country", "city"]),
            models.Index(fields=["language"]),
            models.Index(fields=["timezone"]),
            models.Index(fields=["last_seen_at"]),
            models.Index(fields=["sessions_30d"]),
            models.Index(fields=["purchase_count"]),
            models.Index(fields=["total_spent"]),
            models.Index(fields=["last_purchase_at"]),
            models.Index(fields=["push_opt_in"]),
            # Segment counts semi-join on the ids of live subscribers: an index-only
            # scan of this instead of reading every (wide) subscriber row.
            models.Index(fields=["id"], condition=Q(erased_at__isnull=True), name="subscriber_live_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(language__in=[code for code, _name in settings.LANGUAGES]),
                name="subscriber_language_supported",
            ),
            models.CheckConstraint(
                condition=Q(frequency_limit__in=["none", "daily", "weekly"]),
                name="subscriber_frequency_limit_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                    | Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False)
                ),
                name="subscriber_quiet_hours_both_or_neither",
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="subscriber_external_id_not_empty"),
            models.UniqueConstraint(
                fields=["external_id"],
                name="subscriber_external_id_unique",
                violation_error_message=_("A subscriber with this external id already exists."),
            ),
        ]

    def __str__(self) -> str:
        full_name = f"{self.first_name} {self.last_name}".strip()
        return f"{full_name} ({self.external_id})" if full_name else self.external_id

    def clean(self) -> None:
        super().clean()
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise ValidationError(
                {"quiet_hours_end": _("Set both the start and the end of quiet hours, or neither.")}
            )

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None and self.paused_until > timezone.now()


class TopicPreference(models.Model):
    """A subscriber's explicit choice for one topic; absent means the topic's default."""

    # No single-column FK indexes: the unique (subscriber, topic) and the (topic,
    # opted_in) indexes serve both lookups, and fewer indexes keep imports fast.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="topic_preferences", db_index=False
    )
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="preferences", db_index=False)
    opted_in = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "topic"], name="topic_preference_unique")
        ]
        indexes = [models.Index(fields=["topic", "opted_in"])]

    def __str__(self) -> str:
        return f"{self.subscriber_id}/{self.topic_id}: {'in' if self.opted_in else 'out'}"


class Device(models.Model):
    class Platform(models.TextChoices):
        ANDROID = "android", _("Android")
        IOS = "ios", _("iOS")
        WEB = "web", _("Web")

    class InvalidationReason(models.TextChoices):
        UNREGISTERED = "unregistered", _("Unregistered by the provider")
        SENDER_MISMATCH = "sender_mismatch", _("Registered to another sender")
        INVALID = "invalid", _("Rejected as invalid")
        REMOVED = "removed", _("Removed by the app")
        ERASED = "erased", _("Subscriber erased")

    # Indexed by (subscriber, is_active) below.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="devices", db_index=False
    )
    # The FCM registration token the client SDK gives us (see README, Decisions).
    token = models.CharField(max_length=4096)  # unique: Meta.constraints (see Subscriber)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    is_active = models.BooleanField(default=True)
    is_test = models.BooleanField(
        default=False, help_text=_("Staff test device: receives test sends from the admin.")
    )
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidation_reason = models.CharField(max_length=20, choices=InvalidationReason.choices, blank=True)
    app_version = models.CharField(max_length=40, blank=True)
    # BCP 47 tag from the device (e.g. "pt-BR"); the subscriber's language is separate
    # and changes only through the preference services.
    locale = models.CharField(
        max_length=35, blank=True, help_text=_("The device locale reported by the app, e.g. pt-BR.")
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["subscriber", "is_active"]),
            models.Index(fields=["platform"]),
            # Segments "has an active device on iOS…": an index-only scan of the ids.
            models.Index(
                fields=["platform", "subscriber"],
                condition=Q(is_active=True),
                name="device_active_platform_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(platform__in=["android", "ios", "web"]), name="device_platform_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(is_active=True, invalidated_at__isnull=True, invalidation_reason="")
                    | Q(is_active=False, invalidated_at__isnull=False) & ~Q(invalidation_reason="")
                ),
                name="device_invalidation_consistent",
            ),
            models.CheckConstraint(condition=~Q(token=""), name="device_token_not_empty"),
            models.UniqueConstraint(
                fields=["token"],
                name="device_token_unique",
                violation_error_message=_("This push token is already registered."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} …{self.token[-8:]}"


class ConsentRecordQuerySet(models.QuerySet["ConsentRecord"]):
    """The consent ledger is append-only: no bulk updates or deletes."""

    def update(self, **kwargs: Any) -> int:
        raise TypeError("Consent records are append-only and cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Consent records are append-only and cannot be deleted.")


class ConsentRecord(models.Model):
    """One change of one preference: what, old → new, who/what changed it, when."""

    class Source(models.TextChoices):
        PREFERENCE_CENTER = "preference_center", _("Preference center")
        API = "api", _("Client API")
        IMPORT = "import", _("Import")
        ADMIN = "admin", _("Admin")
        SYSTEM = "system", _("System")

    # Indexed by (subscriber, -created_at) below.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.PROTECT, related_name="consent_records", db_index=False
    )
    # What changed: "push_opt_in", "topic", "frequency_limit", "quiet_hours",
    # "language" or "paused_until"; "topic" rows name the topic.
    field = models.CharField(max_length=40)
    topic = models.ForeignKey(Topic, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    source_detail = models.CharField(
        max_length=255, blank=True, help_text=_("E.g. the imported file's name.")
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ip_hash = models.CharField(max_length=64, blank=True)
    user_agent_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects: ClassVar[ConsentRecordQuerySet] = ConsentRecordQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["subscriber", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=["preference_center", "api", "import", "admin", "system"]),
                name="consent_source_valid",
            ),
            models.CheckConstraint(
                condition=Q(field="topic", topic__isnull=False) | (~Q(field="topic") & Q(topic__isnull=True)),
                name="consent_topic_iff_topic_field",
            ),
        ]

    def __str__(self) -> str:
        what = f"topic {self.topic_id}" if self.field == "topic" else self.field
        return f"{what}: {self.old_value!r} → {self.new_value!r} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise TypeError("Consent records are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("Consent records are append-only and cannot be deleted.")
