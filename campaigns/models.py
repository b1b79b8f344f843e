"""What we say and when: campaigns, their variants, status history and test devices.

A campaign's lifecycle is a small state machine (``Campaign.Status``); every
transition goes through ``campaigns.services`` which checks it is allowed, records
who and when in ``CampaignStatusChange``, and keeps the django-celery-beat objects
(``periodic_task``) in step. Variant texts are translated with
django-modeltranslation (``campaigns/translation.py``) and personalized with the
restricted template language of ``campaigns.rendering``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from audiences.models import Device, Segment, Topic, validate_timezone

if TYPE_CHECKING:
    from django.db.models.fields.related_descriptors import RelatedManager

LANGUAGE_CHOICES = settings.LANGUAGES
# FCM keeps an undelivered message at most 28 days.
MAX_TTL_SECONDS = 28 * 24 * 3600


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def active(self) -> CampaignQuerySet:
        return self.filter(archived_at__isnull=True)


class Campaign(models.Model):  # type: ignore[django-manager-missing]  # modeltranslation patches Variant's manager
    class Kind(models.TextChoices):
        ONE_OFF = "one_off", _("One-off")
        RECURRING = "recurring", _("Recurring")
        TRIGGERED = "triggered", _("Triggered")

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        IN_REVIEW = "in_review", _("In review")
        APPROVED = "approved", _("Approved")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        COMPLETED = "completed", _("Completed")
        PAUSED = "paused", _("Paused")
        CANCELLED = "cancelled", _("Cancelled")

    class ScheduleType(models.TextChoices):
        NOW = "now", _("Send now")
        AT = "at", _("At a date and time")
        LOCAL_TIME = "local_time", _("At a local time in each subscriber's time zone")
        DAILY = "daily", _("Daily")
        WEEKLY = "weekly", _("Weekly")
        CRON = "cron", _("Cron expression")

    class LatePolicy(models.TextChoices):
        SEND_NOW = "send_now", _("Send at once")
        NEXT_DAY = "next_day", _("Send the next day at that time")
        SKIP = "skip", _("Skip them")

    class AbMode(models.TextChoices):
        NONE = "none", _("No A/B test (first variant only)")
        SPLIT = "split", _("Split the audience by variant weight")
        TEST_THEN_WINNER = "test_then_winner", _("Test on a sample, then send the winner")

    class AbMetric(models.TextChoices):
        OPEN = "open", _("Opens")
        CLICK = "click", _("Clicks")
        CONVERSION = "conversion", _("Conversions")

    class QuietHoursPolicy(models.TextChoices):
        DEFER = "defer", _("Wait until the quiet hours end")
        SKIP = "skip", _("Skip subscribers in their quiet hours")

    class CapPolicy(models.TextChoices):
        DEFER = "defer", _("Send when the cap allows")
        DROP = "drop", _("Drop the message")

    class Priority(models.TextChoices):
        NORMAL = "normal", _("Normal")
        HIGH = "high", _("High")

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    topic = models.ForeignKey(Topic, on_delete=models.PROTECT, related_name="campaigns")
    include_segments = models.ManyToManyField(
        Segment,
        blank=True,
        related_name="included_in_campaigns",
        help_text=_("Subscribers in any of these segments. None: everyone reachable on the topic."),
    )
    exclude_segments = models.ManyToManyField(
        Segment, blank=True, related_name="excluded_from_campaigns", help_text=_("Minus anyone in these.")
    )
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.ONE_OFF)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, editable=False)
    default_language = models.CharField(
        max_length=10,
        choices=LANGUAGE_CHOICES,
        default=settings.LANGUAGE_CODE,
        help_text=_("What subscribers get when their language has no translation."),
    )

    # Schedule (kept in sync with django-celery-beat by campaigns.services.scheduling).
    schedule_type = models.CharField(max_length=12, choices=ScheduleType.choices, default=ScheduleType.AT)
    send_at = models.DateTimeField(null=True, blank=True, help_text=_("For “at a date and time”."))
    local_date = models.DateField(null=True, blank=True, help_text=_("For “at a local time”."))
    local_time = models.TimeField(
        null=True,
        blank=True,
        help_text=_("Time of day: local to each subscriber, or of a recurring schedule."),
    )
    late_policy = models.CharField(
        max_length=10,
        choices=LatePolicy.choices,
        default=LatePolicy.NEXT_DAY,
        help_text=_("For subscribers whose local time has already passed when the campaign starts."),
    )
    fallback_timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text=_("Used for subscribers without a known time zone."),
    )
    schedule_timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text=_("Time zone of a recurring schedule."),
    )
    weekdays = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("For weekly: days as numbers, 0 = Sunday … 6 = Saturday, e.g. “1,3,5”."),
    )
    cron_expression = models.CharField(
        max_length=120,
        blank=True,
        help_text=_("minute hour day-of-month month day-of-week, e.g. “0 9 * * 1-5”."),
    )
    ends_at = models.DateTimeField(null=True, blank=True, help_text=_("A recurring campaign stops here."))
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    # A/B settings (the statistics live in their own module).
    ab_mode = models.CharField(max_length=20, choices=AbMode.choices, default=AbMode.NONE)
    control_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(50)],
        help_text=_("Share of the audience held back (sent nothing) to measure lift."),
    )
    ab_test_percent = models.PositiveSmallIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text=_("For “test then winner”: share of the audience in the test."),
    )
    ab_window_hours = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(168)]
    )
    ab_metric = models.CharField(max_length=12, choices=AbMetric.choices, default=AbMetric.CLICK)

    # Delivery options.
    throttle_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Messages per minute at most. Empty: as fast as allowed.")
    )
    ttl_seconds = models.PositiveIntegerField(
        default=24 * 3600,
        validators=[MaxValueValidator(MAX_TTL_SECONDS)],
        help_text=_("How long FCM keeps trying an offline device (at most 28 days)."),
    )
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    quiet_hours_policy = models.CharField(
        max_length=8,
        choices=QuietHoursPolicy.choices,
        default=QuietHoursPolicy.DEFER,
        help_text=_(
            "For a message due inside quiet hours (the subscriber's own, or the campaign's / app's)."
        ),
    )
    quiet_hours_start = models.TimeField(
        null=True,
        blank=True,
        help_text=_("Overrides the app's default quiet hours (local time). Empty: app default."),
    )
    quiet_hours_end = models.TimeField(null=True, blank=True)
    cap_policy = models.CharField(
        max_length=8,
        choices=CapPolicy.choices,
        default=CapPolicy.DEFER,
        help_text=_("For a message over a frequency cap (transactional topics have none)."),
    )
    conversion_event = models.CharField(
        max_length=100, blank=True, help_text=_("Event that counts as a conversion, e.g. “purchase”.")
    )
    conversion_window_hours = models.PositiveSmallIntegerField(
        default=72, validators=[MinValueValidator(1), MaxValueValidator(24 * 30)]
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The audience size when it was last estimated (admin, approval check).
    audience_size = models.PositiveIntegerField(null=True, blank=True, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CampaignQuerySet.as_manager()
    if TYPE_CHECKING:
        variants: RelatedManager[Variant]

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("approve_campaign", "Can approve and launch campaigns"),
            ("send_test_campaign", "Can send test messages of campaigns"),
        ]
        indexes = [models.Index(fields=["status"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "draft",
                        "in_review",
                        "approved",
                        "scheduled",
                        "running",
                        "completed",
                        "paused",
                        "cancelled",
                    ]
                ),
                name="campaign_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["one_off", "recurring", "triggered"]), name="campaign_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(control_percent__lte=50), name="campaign_control_at_most_half"
            ),
            models.CheckConstraint(
                condition=Q(ttl_seconds__lte=MAX_TTL_SECONDS), name="campaign_ttl_at_most_28d"
            ),
            models.CheckConstraint(
                condition=~Q(schedule_type="at") | Q(send_at__isnull=False), name="campaign_at_needs_send_at"
            ),
            models.CheckConstraint(
                condition=~Q(schedule_type="local_time")
                | Q(local_date__isnull=False, local_time__isnull=False),
                name="campaign_local_time_needs_date_and_time",
            ),
            models.CheckConstraint(
                condition=~Q(schedule_type="cron") | ~Q(cron_expression=""),
                name="campaign_cron_needs_expression",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_recurring(self) -> bool:
        return self.schedule_type in {
            self.ScheduleType.DAILY,
            self.ScheduleType.WEEKLY,
            self.ScheduleType.CRON,
        }

    @property
    def is_editable(self) -> bool:
        """Content and audience can change only before review or while paused."""
        return self.status in {self.Status.DRAFT, self.Status.PAUSED}


class CampaignStatusChange(models.Model):
    """Append-only history of a campaign's status: who moved it, from what, to what, when."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12, choices=Campaign.Status.choices)
    to_status = models.CharField(max_length=12, choices=Campaign.Status.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.from_status} → {self.to_status}"


class Variant(models.Model):
    """One version of the message. ``title`` and ``body`` are translated (one column per language)."""

    class ClickAction(models.TextChoices):
        NONE = "none", _("Open the app")
        URL = "url", _("Open a web address")
        DEEP_LINK = "deep_link", _("Open a screen in the app (deep link)")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=40, default="A", help_text=_("e.g. A, B"))
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(100)], help_text=_("Relative share.")
    )
    title = models.CharField(
        max_length=300, help_text=_("Template: e.g. “Hi {{ subscriber.first_name|default:'there' }}”.")
    )
    body = models.TextField(max_length=2000)
    image_url = models.URLField(max_length=500, blank=True)
    click_action = models.CharField(max_length=10, choices=ClickAction.choices, default=ClickAction.NONE)
    click_url = models.CharField(
        max_length=500, blank=True, help_text=_("https://… or yourapp://screen; may use template variables.")
    )
    data = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Key/value pairs the app receives; values may use template variables."),
    )
    android_channel_id = models.CharField(max_length=100, blank=True)
    android_icon = models.CharField(max_length=100, blank=True)
    ios_sound = models.CharField(max_length=100, blank=True, help_text=_("e.g. “default”"))
    ios_badge = models.PositiveIntegerField(null=True, blank=True)
    web_icon = models.URLField(max_length=500, blank=True)
    web_actions = models.JSONField(
        default=list, blank=True, help_text=_("Up to two buttons: [{“action”: “buy”, “title”: “Buy now”}].")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Declared so that type checkers see it: modeltranslation swaps in its own manager.
    objects: ClassVar[models.Manager[Variant]] = models.Manager()

    class Meta:
        ordering = ["campaign", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "name"], name="variant_name_unique_per_campaign"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="variant_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.name}"


class TestDevice(models.Model):
    """A device a staff user receives test sends on ("Send test to my devices")."""

    __test__ = False  # a model, not a pytest test class

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="test_devices")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=100, blank=True, help_text=_("e.g. “My Pixel”"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "label", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "device"], name="test_device_unique_per_user")]

    def __str__(self) -> str:
        return self.label or f"{self.device}"
