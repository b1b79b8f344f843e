# The client API registers a device with its locale (issue #3, part 3).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audiences', '0002_events_segments_api_imports'),
    ]

    operations = [
        migrations.AddField(
            model_name='device',
            name='locale',
            field=models.CharField(blank=True, help_text='The device locale reported by the app, e.g. pt-BR.', max_length=35),
        ),
    ]
