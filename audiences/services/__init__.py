"""Writes of the audiences app, one module per concern; import from here."""

from audiences.services.preferences import (
    UNSET,
    ConsentContext,
    PreferenceError,
    subscriber_record_initial_consent,
    subscriber_update_preferences,
)
from audiences.services.segments import (
    SegmentError,
    segment_add_members,
    segment_create_static,
)

__all__ = [
    "UNSET",
    "ConsentContext",
    "PreferenceError",
    "SegmentError",
    "segment_add_members",
    "segment_create_static",
    "subscriber_record_initial_consent",
    "subscriber_update_preferences",
]
