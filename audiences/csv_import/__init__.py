"""CSV import of audiences: one engine behind the admin, the Celery tasks and the command.

Pure modules (no database): :mod:`.decoding` (size, encoding, delimiter, records),
:mod:`.mapping` (columns → fields), :mod:`.validation` (rows → typed values),
:mod:`.summary`. With the database: :mod:`.plan` (compare a batch with what is
stored), :mod:`.writes` (set-based SQL) and :mod:`.engine` (the two passes).
"""

from audiences.csv_import.decoding import ImportFileError
from audiences.csv_import.engine import ImportOptions, ImportProgress, import_audience
from audiences.csv_import.summary import ImportSummary, format_summary

__all__ = [
    "ImportFileError",
    "ImportOptions",
    "ImportProgress",
    "ImportSummary",
    "format_summary",
    "import_audience",
]
