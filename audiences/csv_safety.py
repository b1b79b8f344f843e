"""Spreadsheet formula-injection defence for every export (pure logic).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return can be
run as a formula by Excel, LibreOffice or Google Sheets. We store such values
verbatim and, on export, prefix them with a single quote so spreadsheets show them
as text (OWASP "CSV Injection"). django-import-export's own setting only strips a
leading ``=``, which is not enough.
"""

from __future__ import annotations

from typing import Any

import tablib

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def escape_dataset(dataset: tablib.Dataset) -> tablib.Dataset:
    """A copy of ``dataset`` with every string cell escaped (headers included)."""
    escaped = tablib.Dataset(headers=[escape_cell(h) for h in dataset.headers or []])
    escaped.title = dataset.title
    for row in dataset:
        escaped.append([escape_cell(cell) for cell in row])
    return escaped
