"""Formula-injection escaping for exports (pure logic + the real export path)."""

from __future__ import annotations

import pytest
import tablib
from hypothesis import given
from hypothesis import strategies as st

from audiences.csv_safety import FORMULA_PREFIXES, escape_cell, escape_dataset


@pytest.mark.parametrize("value", ["=1+1", "+49 30 1234", "-2+3", "@SUM(A1)", "\tx", "\rcmd"])
def test_dangerous_cells_are_quoted(value: str) -> None:
    assert escape_cell(value) == "'" + value


@given(st.text())
def test_escape_is_exactly_a_prefix_when_needed(value: str) -> None:
    escaped = escape_cell(value)
    if value.startswith(FORMULA_PREFIXES):
        assert escaped == "'" + value
    else:
        assert escaped == value


def test_non_strings_untouched() -> None:
    assert escape_cell(-5) == -5
    assert escape_cell(None) is None


def test_dataset_escaping() -> None:
    data = tablib.Dataset(headers=["name", "=evil"])
    data.append(['=HYPERLINK("http://x")', 3])
    out = escape_dataset(data)
    assert out.headers == ["name", "'=evil"]
    assert out[0] == ('\'=HYPERLINK("http://x")', 3)


@pytest.mark.django_db
def test_subscriber_export_escapes_formulae_in_csv_and_xlsx() -> None:
    from audiences.resources import SubscriberResource
    from tests.factories import SubscriberFactory

    SubscriberFactory(external_id="u1", first_name="=cmd|' /C calc'!A0", city="@Berlin", last_name="-x")
    dataset = SubscriberResource().export()
    row = dict(zip(dataset.headers, dataset[0], strict=True))
    assert row["first_name"] == "'=cmd|' /C calc'!A0"
    assert row["city"] == "'@Berlin"
    assert row["last_name"] == "'-x"
    assert "'=cmd" in dataset.export("csv")
    import io

    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(dataset.export("xlsx"))).active
    assert sheet is not None
    cells = {cell.value for row in sheet.iter_rows() for cell in row}
    assert "'=cmd|' /C calc'!A0" in cells
    assert not any(str(v).startswith("=") for v in cells if v is not None)
