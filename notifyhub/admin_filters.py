"""Admin list filters shared by the apps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from unfold.contrib.filters.admin import RangeDateTimeFilter


class AwareRangeDateTimeFilter(RangeDateTimeFilter):
    """Unfold's date-time range filter, reading the bounds in the admin's time zone.

    Unfold passes naive datetimes to the query, which Django warns about (and reads
    as UTC) when USE_TZ is on.
    """

    def _bound(self, side: str) -> dt.datetime | None:
        day = self.used_parameters.get(f"{self.parameter_name}_{side}_0")
        time = self.used_parameters.get(f"{self.parameter_name}_{side}_1")
        if not day or not time:
            return None
        value = parse_datetime(f"{day} {time}")
        if value is None:
            raise ValidationError("invalid date or time")
        return timezone.make_aware(value) if timezone.is_naive(value) else value

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        try:
            start, end = self._bound("from"), self._bound("to")
        except (ValueError, ValidationError):
            return None
        if start is not None:
            queryset = queryset.filter(**{f"{self.parameter_name}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.parameter_name}__lte": end})
        return queryset
