"""``manage.py import_audience FILE`` — the admin's importer on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audiences.csv_import import ImportFileError, ImportOptions, format_summary
from audiences.csv_import.mapping import parse_mapping_option
from audiences.services import audience_import_file


class Command(BaseCommand):
    help = (
        "Import subscribers from a CSV file (the same importer as the admin). Prints the preview "
        "summary; exits with status 1 and writes nothing when the file has errors."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", type=Path, help="The CSV file (UTF-8, UTF-16 or Windows-1252; , ; or tab)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check and summarise; write nothing.")
        parser.add_argument(
            "--segment", default="", metavar="NAME", help="Create a static segment of the rows."
        )
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid rows and report the invalid ones."
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar='"File Column=field"',
            help='Map a column to a field (repeatable), e.g. --map "Kunden-Nr=external_id".',
        )
        parser.add_argument(
            "--mapping-file",
            type=Path,
            help='JSON: {"columns": {"File Column": "field"}, "attribute_types": {"key": "number"}} '
            "or just the columns object.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        columns, types = self._mapping(options)
        summary = audience_import_file(
            path=path,
            options=ImportOptions(
                file_name=path.name,
                mapping=columns,
                attribute_types=types,
                skip_invalid=options["skip_invalid"],
                segment_name=options["segment"],
                dry_run=options["dry_run"],
            ),
        )
        self.stdout.write(format_summary(summary))
        if summary.file_error:
            raise CommandError("The file cannot be imported; nothing was written.")
        if summary.error_count and not (summary.written or options["dry_run"]):
            raise CommandError(
                f"{summary.invalid_rows:,} rows have errors; nothing was written. Fix them, or pass "
                "--skip-invalid to import the valid rows."
            )
        if summary.error_count and options["dry_run"]:
            raise CommandError(f"{summary.invalid_rows:,} rows have errors.")

    def _mapping(self, options: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        columns: dict[str, str] = {}
        types: dict[str, str] = {}
        mapping_file: Path | None = options["mapping_file"]
        if mapping_file is not None:
            try:
                data = json.loads(mapping_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read the mapping file {mapping_file}: {exc}") from exc
            if not isinstance(data, dict):
                raise CommandError("The mapping file must hold a JSON object.")
            if isinstance(data.get("columns"), dict):
                types = {str(k): str(v) for k, v in (data.get("attribute_types") or {}).items()}
                data = data["columns"]
            columns = {str(k): str(v) for k, v in data.items()}
        try:
            columns.update(parse_mapping_option(options["map"]))
        except ImportFileError as exc:
            raise CommandError(exc.message) from exc
        return columns, types
