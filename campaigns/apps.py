from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender: AppConfig, **kwargs: Any) -> None:
    """Keep the Marketer/Approver/Viewer groups after any migrate (also a test database's flush)."""
    from django.apps import apps

    from campaigns.roles import roles_sync

    roles_sync(apps)


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        # After auth's own post_migrate handler has created the permissions.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="campaigns.roles_sync")
