"""django-import-export resources (export now; the importer arrives with #3)."""

from __future__ import annotations

from typing import Any

import tablib
from import_export import fields, resources

from audiences.csv_safety import escape_dataset
from audiences.models import Subscriber


class FormulaSafeResource(resources.ModelResource):
    """Every export through this resource is escaped against formula injection."""

    def export(self, *args: Any, **kwargs: Any) -> tablib.Dataset:
        return escape_dataset(super().export(*args, **kwargs))


class SubscriberResource(FormulaSafeResource):
    interests = fields.Field(attribute="interests", column_name="interests")

    class Meta:
        model = Subscriber
        import_id_fields = ("external_id",)
        fields = (
            "external_id",
            "email",
            "first_name",
            "last_name",
            "language",
            "timezone",
            "country",
            "city",
            "interests",
            "push_opt_in",
            "frequency_limit",
            "last_seen_at",
            "sessions_30d",
            "purchase_count",
            "total_spent",
            "last_purchase_at",
            "created_at",
        )
        export_order = fields

    def dehydrate_interests(self, subscriber: Subscriber) -> str:
        return ";".join(str(item) for item in subscriber.interests or [])
