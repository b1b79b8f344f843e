"""Row validation and typed values (pure, no database)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.csv_import.decoding import Record
from audiences.csv_import.mapping import build_columns
from audiences.csv_import.validation import (
    ParsedRow,
    RowError,
    RowValidator,
    ValidationContext,
    infer_type,
    parse_bool,
    parse_date,
    parse_number,
)

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pt-br", "ar"]


def validator(headers: list[str], types: dict[str, str] | None = None) -> RowValidator:
    columns = build_columns(headers, overrides={}, topic_slugs=["offers"])
    context = ValidationContext(languages=LANGUAGES, attribute_types=types or {}, now=NOW)
    return RowValidator(columns=columns, header_count=len(headers), context=context)


def check(headers: list[str], cells: list[str], **kwargs: object) -> tuple[ParsedRow | None, list[RowError]]:
    return validator(headers, **kwargs).validate(Record(line=7, cells=cells))  # type: ignore[arg-type]


def test_a_full_valid_row_is_normalized() -> None:
    row, errors = check(
        ["id", "email", "language", "timezone", "country", "interests", "first_name"],
        ["u1", " ada@example.com ", "pt_BR", "europe/lisbon", "pt", "Running; yoga |  ;Running", "  Ada"],
    )
    assert errors == []
    assert row is not None
    assert row.external_id == "u1"
    assert row.fields == {
        "email": "ada@example.com",
        "language": "pt-br",
        "timezone": "Europe/Lisbon",
        "country": "PT",
        "interests": ["Running", "yoga"],
        "first_name": "  Ada",  # names are stored verbatim
    }


def test_blank_cells_are_absent_not_empty() -> None:
    row, errors = check(["id", "email", "city"], ["u1", "", "  "])
    assert errors == [] and row is not None and row.fields == {}


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("email", "not-an-email", "“not-an-email” is not a valid email address."),
        ("timezone", "Berlin", "“Berlin” is not an IANA time zone; use a name like Europe/Berlin"),
        ("timezone", "Mars/Olympus", "is not an IANA time zone"),
        ("language", "xx", "Language “xx” is not offered; use one of: en, es"),
        ("language", "es-MX", "Did you mean es?"),
        ("country", "Germany", "is not an ISO 3166-1 country code"),
        ("country", "UK", "Use GB."),
        ("country", "XX", "is not an ISO 3166-1 country code"),
        ("first_name", "x" * 151, "the limit for first_name is 150"),
        ("Offers", "maybe", "“maybe” is not yes/no"),
    ],
)
def test_invalid_values_name_line_column_and_fix(header: str, value: str, message: str) -> None:
    row, errors = check(["id", header], ["u1", value])
    assert row is None
    assert len(errors) == 1
    assert (errors[0].line, errors[0].column) == (7, header)
    assert message in errors[0].message


def test_missing_key_is_an_error_on_the_key_column() -> None:
    row, errors = check(["Customer Id", "email"], ["", "a@example.com"])
    assert row is None and errors == [
        RowError(7, "Customer Id", "external_id is empty; every row needs its key.")
    ]


def test_ragged_rows_are_errors() -> None:
    assert "has 1 cells but the header has 3" in check(["id", "a", "b"], ["u1"])[1][0].message
    assert "has 4 cells" in check(["id", "a", "b"], ["u1", "x", "y", "z"])[1][0].message
    # Trailing empty cells (spreadsheets add them) are not ragged.
    assert check(["id", "a"], ["u1", "x", "", ""])[1] == []


def test_reader_errors_pass_through_with_their_line() -> None:
    row, errors = validator(["id"]).validate(Record(line=12, cells=[], error="broken quote"))
    assert row is None and errors == [RowError(12, "", "broken quote")]


def test_opt_in_without_source_and_time_is_rejected() -> None:
    row, errors = check(["id", "Offers", "push_opt_in"], ["u1", "yes", "true"])
    assert row is None
    assert [e.column for e in errors] == ["Offers", "push_opt_in"]
    assert "needs its consent source and time" in errors[0].message


def test_opt_in_with_row_level_or_topic_evidence_is_accepted() -> None:
    row, errors = check(
        ["id", "Offers", "consent_source", "consent_time"], ["u1", "yes", "checkout", "2024-03-01 10:00"]
    )
    assert errors == [] and row is not None
    assert row.consents == {"offers": (True, "checkout", dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC))}
    row, errors = check(
        ["id", "Offers", "offers_consent_source", "offers_consent_time"],
        ["u1", "1", "app", "2024-03-01T10:00+02:00"],
    )
    assert (
        errors == []
        and row is not None
        and row.consents["offers"][2] == dt.datetime(2024, 3, 1, 8, tzinfo=dt.UTC)
    )


def test_opt_out_needs_no_evidence_but_future_consent_times_are_refused() -> None:
    row, errors = check(["id", "Offers"], ["u1", "no"])
    assert errors == [] and row is not None and row.consents == {"offers": (False, "", None)}
    _row, errors = check(
        ["id", "Offers", "consent_source", "consent_time"], ["u1", "yes", "web", "2030-01-01"]
    )
    assert "in the future" in errors[0].message


def test_device_needs_token_and_platform() -> None:
    row, errors = check(["id", "device_token", "platform"], ["u1", "tok", "iPhone"])
    assert errors == [] and row is not None and row.device == ("tok", "ios")
    assert (
        "both its token and its platform"
        in check(["id", "device_token", "platform"], ["u1", "tok", ""])[1][0].message
    )
    assert (
        "not a platform" in check(["id", "device_token", "platform"], ["u1", "tok", "symbian"])[1][0].message
    )


def test_typed_attributes() -> None:
    types = {"visits": "number", "born": "date", "vip": "boolean", "plan": "text"}
    row, errors = check(
        ["id", "visits", "born", "vip", "plan"], ["u1", "12", "1990-02-03", "Yes", "=Gold"], types=types
    )
    assert errors == [] and row is not None
    assert row.attributes == {"visits": 12, "born": "1990-02-03", "vip": True, "plan": "=Gold"}
    _row, errors = check(["id", "visits", "born"], ["u1", "12,5", "03/02/1990"], types=types)
    assert ["a number" in errors[0].message, "YYYY-MM-DD" in errors[1].message] == [True, True]


def test_type_inference() -> None:
    assert infer_type(["yes", "no", ""]) == "boolean"
    assert infer_type(["1", "0", "2.5"]) == "number"
    assert infer_type(["2024-01-01", "2023-12-31T10:00"]) == "date"
    assert infer_type(["gold", "1"]) == "text"
    assert infer_type([]) == "text"


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_parse_exactly(value: int) -> None:
    assert parse_number(str(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_floats_parse_back(value: float) -> None:
    assert parse_number(repr(value)) == value


@given(st.dates())
def test_iso_dates_parse(value: dt.date) -> None:
    assert parse_date(value.isoformat()) == value.isoformat() or value.year < 1000


@given(st.booleans(), st.sampled_from(["{}", "{} ", " {}", "{}".upper()]))
def test_booleans(value: bool, spelling: str) -> None:
    word = spelling.format("yes" if value else "no")
    assert parse_bool(word) is value


HEADERS = ["id", "email", "language", "timezone", "country", "interests", "Offers", "consent_time", "visits"]


@given(st.lists(st.text(max_size=30), min_size=len(HEADERS), max_size=len(HEADERS)))
def test_validator_never_crashes_and_errors_always_name_the_line(cells: list[str]) -> None:
    row, errors = check(HEADERS, cells, types={"visits": "number"})
    assert (row is None) == bool(errors)
    for error in errors:
        assert error.line == 7 and error.message
        assert error.column in HEADERS
