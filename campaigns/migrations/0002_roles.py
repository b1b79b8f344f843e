"""Create the Marketer, Approver and Viewer groups (see campaigns/roles.py)."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

from campaigns.roles import roles_sync


def forwards(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally created after all migrations ran; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("audiences", "0005_lean_indexes"),
        ("delivery", "0002_run_delivery_outboxmessage_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
