"""The preference-center benchmark's server settings: the real ones, plus a hello-world URL.

Only the benchmark's gunicorn loads this (``DJANGO_SETTINGS_MODULE``): the product has
no hello view.
"""

from notifyhub.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.hello_urls"
