"""The Celery application.

Workers and beat start with ``celery -A notifyhub ...``. Configuration lives in
Django settings under the ``CELERY_`` prefix (see ``notifyhub/settings.py``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings")

app = Celery("notifyhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
