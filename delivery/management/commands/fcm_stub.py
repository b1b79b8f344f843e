"""``manage.py fcm_stub --port N`` — a loopback FCM for tests, benchmarks and dry runs."""

from __future__ import annotations

from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.fcm_stub import FaultPlanError
from delivery.fcm_stub.cli import add_arguments, run


class Command(BaseCommand):
    help = (
        "Run a loopback Firebase Cloud Messaging stub (HTTP v1 messages:send + OAuth token endpoint, "
        "fault injection) and print the FCM_ENDPOINT and FIREBASE_CREDENTIALS that point NotifyHub "
        "at it. Ctrl-C stops it. Example: manage.py fcm_stub --port 9099 --write-credentials "
        "var/fcm-stub.json --log var/fcm-stub.jsonl"
    )
    # The stub touches neither the database nor signed data.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run(options, stdout=cast(TextIO, self.stdout))
        except (FaultPlanError, ValueError) as error:
            raise CommandError(str(error)) from error
        except OSError as error:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {error}") from error
