"""Static segments: creation and set-based membership."""

from __future__ import annotations

import pytest

from audiences.models import Segment, SegmentMember, Subscriber
from audiences.services import SegmentError, segment_add_members, segment_create_static
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def test_static_segment_from_queryset_is_one_insert_select(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    germans = [SubscriberFactory(country="DE") for _ in range(5)]
    SubscriberFactory(country="FR")
    with django_assert_max_num_queries(6):
        segment = segment_create_static(name="Germany", subscribers=Subscriber.objects.filter(country="DE"))
    assert segment.kind == Segment.Kind.STATIC
    assert set(SegmentMember.objects.values_list("subscriber_id", flat=True)) == {s.pk for s in germans}
    # adding the same people again changes nothing
    assert segment_add_members(segment=segment, subscribers=Subscriber.objects.filter(country="DE")) == 5
    assert segment_add_members(segment=segment, subscribers=[germans[0].pk]) == 5


def test_static_segment_name_must_be_free_and_not_blank() -> None:
    segment_create_static(name="VIP", subscribers=[])
    with pytest.raises(SegmentError, match="already exists"):
        segment_create_static(name="vip", subscribers=[])
    with pytest.raises(SegmentError, match="name"):
        segment_create_static(name="  ", subscribers=[])


def test_rule_segments_hold_no_members() -> None:
    segment = Segment.objects.create(name="Rules", kind=Segment.Kind.DYNAMIC)
    with pytest.raises(SegmentError, match="only static segments"):
        segment_add_members(segment=segment, subscribers=[SubscriberFactory().pk])
