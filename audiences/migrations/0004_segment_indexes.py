# Indexes for segment counts (issue #3, segments): see tests/benchmarks/test_segments.py.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0003_device_locale"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="subscriber",
            index=models.Index(
                condition=models.Q(("erased_at__isnull", True)), fields=["id"], name="subscriber_live_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="device",
            index=models.Index(
                condition=models.Q(("is_active", True)),
                fields=["platform", "subscriber"],
                name="device_active_platform_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["name", "occurred_at"], include=("subscriber",), name="event_name_time_subscriber_idx"
            ),
        ),
    ]
