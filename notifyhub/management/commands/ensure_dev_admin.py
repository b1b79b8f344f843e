"""``manage.py ensure_dev_admin`` — make sure a development admin login exists.

Development only: it refuses to run with DEBUG off, so a production database never
gets a well-known password. Prints the admin URL and the credentials.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Create (or reset) the development superuser and print how to log in. DEBUG only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("NOTIFYHUB_DEV_ADMIN_USER", "admin"))
        parser.add_argument(
            "--password", default=os.environ.get("NOTIFYHUB_DEV_ADMIN_PASSWORD", "notifyhub-admin")
        )
        parser.add_argument("--url", default=f"http://127.0.0.1:{settings.PORT}/admin/")

    def handle(self, *args: Any, username: str, password: str, url: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "ensure_dev_admin only runs with DEBUG=true. In production create an "
                "administrator with: python manage.py createsuperuser"
            )
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@localhost"}
        )
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} the development admin.\n"
                f"  Admin:    {url}\n"
                f"  Username: {username}\n"
                f"  Password: {password}   (development only)"
            )
        )
