"""Settings for the test suite: the real settings module, with a test secret.

Everything else (database, broker) still comes from the environment, so CI runs the
same suite against PostgreSQL and Redis by setting DATABASE_URL / CELERY_BROKER_URL.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789abcdef")

from notifyhub.settings import *  # noqa: F403
from notifyhub.settings import STORAGES

# No collectstatic in tests: serve static files from the app folders.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# The live server in browser tests speaks plain HTTP.
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_SSL_REDIRECT = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
