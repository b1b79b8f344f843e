#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings")
    # Administrative commands (migrate, check, makemigrations…) need no real secret,
    # so without SECRET_KEY they run with a throwaway one and a warning. Serving does
    # not: runserver, gunicorn and Celery refuse to start without SECRET_KEY.
    if sys.argv[1:2] != ["runserver"]:
        os.environ.setdefault("NOTIFYHUB_EPHEMERAL_SECRET_KEY", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
