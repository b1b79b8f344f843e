"""Models of the audiences app, one module per concern."""

from audiences.models.api import ApiKey
from audiences.models.events import AttributeDefinition, Event
from audiences.models.imports import ImportJob
from audiences.models.segments import Segment, SegmentMember
from audiences.models.subscribers import (
    LANGUAGE_CHOICES,
    ConsentRecord,
    ConsentRecordQuerySet,
    Device,
    Subscriber,
    SubscriberQuerySet,
    Topic,
    TopicPreference,
    country_validator,
    validate_timezone,
)

__all__ = [
    "LANGUAGE_CHOICES",
    "ApiKey",
    "AttributeDefinition",
    "ConsentRecord",
    "ConsentRecordQuerySet",
    "Device",
    "Event",
    "ImportJob",
    "Segment",
    "SegmentMember",
    "Subscriber",
    "SubscriberQuerySet",
    "Topic",
    "TopicPreference",
    "country_validator",
    "validate_timezone",
]
