"""Bytes → records: size limit, encodings, delimiters, unreadable records (pure, no database)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.csv_import.decoding import (
    MAX_CELL_CHARS,
    ImportFileError,
    Record,
    check_size,
    detect_delimiter,
    detect_encoding,
    open_text,
    read_records,
)

TEXT = "external_id,first_name\nu1,Zoë Straße\nu2,Šárka 🎉\n"
WESTERN = "external_id,first_name\nu1,Zoë Straße\nu2,Šárka Müller\n"  # cp1252 has no emoji


def records(data: bytes, delimiter: str = ",") -> list[Record]:
    stream = io.BytesIO(data)
    return list(read_records(open_text(stream, detect_encoding(stream)), delimiter=delimiter))


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (TEXT.encode("utf-8-sig"), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),  # platform order, with BOM
        (b"\xfe\xff" + TEXT.encode("utf-16-be"), "utf-16"),
        (b"\xff\xfe" + TEXT.encode("utf-16-le"), "utf-16"),
        (WESTERN.encode("cp1252"), "cp1252"),
    ],
)
def test_encodings_are_detected_and_text_round_trips(data: bytes, encoding: str) -> None:
    stream = io.BytesIO(data)
    assert detect_encoding(stream) == encoding
    assert stream.tell() == 0
    rows = records(data)
    expected = WESTERN if encoding == "cp1252" else TEXT
    assert [r.cells for r in rows] == [line.split(",") for line in expected.splitlines()]
    # The BOM never leaks into the first header.
    assert rows[0].cells[0] == "external_id"


def test_cp1252_byte_late_in_the_file_is_still_detected() -> None:
    """The whole file is scanned, not just its start (the 1 MiB chunk boundary included)."""
    data = ("u,Name\n" + "x,plain ascii\n" * 120_000 + "y,Café\n").encode("cp1252")
    assert len(data) > (1 << 20)
    assert detect_encoding(io.BytesIO(data)) == "cp1252"
    assert records(data)[-1].cells == ["y", "Café"]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (TEXT.encode("utf-32"), "UTF-32"),
        (b"PK\x03\x04" + b"\x00" * 100, "Excel workbook (.xlsx)"),
        (b"\xd0\xcf\x11\xe0" + b"\x00" * 100, "old Excel workbook (.xls)"),
        (TEXT.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        (b"external_id,name\nu1,\x81\x8d\x8f\n", "neither UTF-8 nor Windows-1252"),
        (b"\xef\xbb\xbfexternal_id\nu1,\xe9\n", "claims to be UTF-8"),
        ("external_id,name\nu1,Дмитрий Иванов Сергеевич\n".encode("cp1251"), "non-Western legacy encoding"),
    ],
)
def test_unreadable_encodings_are_refused_by_name(data: bytes, named: str) -> None:
    with pytest.raises(ImportFileError) as excinfo:
        detect_encoding(io.BytesIO(data))
    assert named in excinfo.value.message
    assert "UTF-8" in excinfo.value.message  # and it says what to do


def test_size_limit_is_checked_on_the_size_alone() -> None:
    check_size(100, limit=100)
    with pytest.raises(ImportFileError, match=r"101\.0 MB; the import limit is 100\.0 MB"):
        check_size(101 * 1024 * 1024, limit=100 * 1024 * 1024)


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiters_are_detected(delimiter: str) -> None:
    sample = delimiter.join(["Customer Id", "E-mail", "City"]) + "\n"
    sample += delimiter.join(["1", "a@example.com", "Berlin"]) + "\n"
    assert detect_delimiter(sample) == delimiter


def test_semicolon_file_with_commas_inside_quoted_values() -> None:
    sample = 'id;name;city\n1;"Doe, Jane";Berlin\n2;"Roe, Rick";"Köln, Ehrenfeld"\n'
    assert detect_delimiter(sample) == ";"


def test_single_column_file_reads_with_commas() -> None:
    assert detect_delimiter("external_id\nu1\nu2\n") == ","


cells = st.text(alphabet=st.characters(categories=["L", "N"]) | st.sampled_from(" .-'é@"), max_size=12)


@given(
    delimiter=st.sampled_from([",", ";", "\t"]),
    width=st.integers(min_value=2, max_value=8),
    data=st.data(),
)
def test_delimiter_detection_on_generated_tables(delimiter: str, width: int, data: st.DataObject) -> None:
    header = data.draw(st.lists(cells.filter(str.strip), min_size=width, max_size=width))
    rows = data.draw(st.lists(st.lists(cells, min_size=width, max_size=width), max_size=20))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows([header, *rows])
    assert detect_delimiter(out.getvalue()) == delimiter


def test_records_carry_their_first_line_and_skip_blank_lines() -> None:
    data = b'id,note\n1,"two\nlines"\n\n,\n2,x\n'
    assert [(r.line, r.cells) for r in records(data)] == [
        (1, ["id", "note"]),
        (2, ["1", "two\nlines"]),
        (6, ["2", "x"]),
    ]


def test_unterminated_quote_is_a_row_error_on_its_line() -> None:
    rows = records(b'id,name\n1,ok\n2,"never closed\n3,more\n')
    assert [r.cells for r in rows[:2]] == [["id", "name"], ["1", "ok"]]
    assert rows[2].line == 3
    assert "never closed (unterminated quote)" in rows[2].error


def test_stray_quote_is_a_row_error_and_reading_goes_on() -> None:
    rows = records(b'id,name\n1,"a"b\n2,fine\n')
    assert rows[1].line == 2 and "quote" in rows[1].error
    assert rows[2].cells == ["2", "fine"]


def test_nul_character_is_a_row_error() -> None:
    rows = records(b"id,name\n1,Ada\x00Lovelace\n2,ok\n")
    assert rows[1].line == 2 and "NUL" in rows[1].error
    assert not rows[2].error


def test_oversized_field_is_a_row_error() -> None:
    rows = records(b"id,name\n1," + b"x" * (MAX_CELL_CHARS + 1) + b"\n2,ok\n")
    assert rows[1].line == 2 and f"limit is {MAX_CELL_CHARS:,}" in rows[1].error
    assert rows[2].cells == ["2", "ok"]


def test_cell_over_the_csv_module_limit_is_a_row_error() -> None:
    rows = records(b'id,name\n1,"' + b"y" * (csv.field_size_limit() + 10) + b'"\n2,ok\n')
    assert rows[1].line == 2 and "too large" in rows[1].error
