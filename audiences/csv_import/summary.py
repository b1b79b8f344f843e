"""The outcome of an import or a dry run, and its plain-text form (pure logic).

The admin preview renders :class:`ImportSummary` as HTML and the command prints
:func:`format_summary`; both show the same counts, sample rows and errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from audiences.csv_import.decoding import DELIMITER_NAMES, ENCODING_LABELS
from audiences.csv_import.validation import RowError

# Every error is counted; the first ones are kept with line, column and message
# (a million-row file of errors must not become a million-entry JSON document).
MAX_KEPT_ERRORS = 1000
SAMPLES_PER_KIND = 5
KINDS = ("created", "updated", "unchanged")


@dataclass
class ImportSummary:
    file_name: str
    encoding: str = ""
    delimiter: str = ""
    # [{"header", "target", "type"}] in file order; "type" for custom attributes.
    columns: list[dict[str, str]] = field(default_factory=list)
    total_rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_count: int = 0
    invalid_rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    file_error: str = ""
    written: bool = False
    segment: str = ""

    @property
    def ok(self) -> bool:
        return not self.file_error and not self.error_count

    @property
    def valid_rows(self) -> int:
        return self.created + self.updated + self.unchanged

    def add_row_errors(self, errors: list[RowError]) -> None:
        """The errors of one invalid row."""
        self.invalid_rows += 1
        for error in errors:
            self.error_count += 1
            if len(self.errors) < MAX_KEPT_ERRORS:
                self.errors.append({"line": error.line, "column": error.column, "message": error.message})

    def add_sample(self, kind: str, sample: dict[str, Any]) -> None:
        if len(self.samples[kind]) < SAMPLES_PER_KIND:
            self.samples[kind].append(sample)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportSummary:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


def describe_format(summary: ImportSummary) -> str:
    encoding = ENCODING_LABELS.get(summary.encoding, summary.encoding)
    delimiter = DELIMITER_NAMES.get(summary.delimiter, summary.delimiter)
    return f"{encoding}, {delimiter}-separated" if encoding else ""


def format_summary(summary: ImportSummary) -> str:
    """The summary the command prints (the admin preview shows the same facts)."""
    lines = [f"File: {summary.file_name}" + (f" ({describe_format(summary)})" if summary.encoding else "")]
    if summary.file_error:
        lines += ["", f"The file cannot be imported: {summary.file_error}", "Nothing was written."]
        return "\n".join(lines)
    lines.append("Columns:")
    for column in summary.columns:
        kind = f" ({column['type']})" if column.get("type") else ""
        lines.append(f"  {column['header']!s:<30} → {column['target']}{kind}")
    lines += [
        "",
        f"Rows: {summary.total_rows:,}  created: {summary.created:,}  updated: {summary.updated:,}  "
        f"unchanged: {summary.unchanged:,}  errors: {summary.error_count:,} "
        f"(in {summary.invalid_rows:,} rows)",
    ]
    for kind in KINDS:
        samples = summary.samples.get(kind) or []
        if samples:
            lines.append(f"First {kind} rows:")
            for sample in samples:
                lines.append(f"  line {sample['line']}: {sample['external_id']}{_sample_detail(sample)}")
    if summary.error_count:
        shown = len(summary.errors)
        more = f" (first {shown:,} shown)" if shown < summary.error_count else ""
        lines.append(f"Errors{more}:")
        for error in summary.errors:
            where = f", column {error['column']}" if error["column"] else ""
            lines.append(f"  line {error['line']}{where}: {error['message']}")
    lines.append("")
    if summary.written:
        lines.append(
            f"Imported: {summary.created:,} created, {summary.updated:,} updated, "
            f"{summary.unchanged:,} unchanged"
            + (f"; {summary.invalid_rows:,} invalid rows skipped" if summary.invalid_rows else "")
            + (f"; static segment “{summary.segment}”" if summary.segment else "")
            + "."
        )
    else:
        lines.append("Nothing was written.")
    return "\n".join(lines)


def _sample_detail(sample: dict[str, Any]) -> str:
    if sample.get("changes"):
        return " — " + "; ".join(f"{name}: {old!r} → {new!r}" for name, old, new in sample["changes"])
    if sample.get("values"):
        return " — " + ", ".join(f"{name}={value!r}" for name, value in sample["values"].items())
    return ""
