"""Column mapping: header matching, pre-filled suggestions, overrides (pure, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.csv_import.decoding import ImportFileError
from audiences.csv_import.mapping import (
    attribute_key,
    build_columns,
    normalize_header,
    parse_mapping_option,
    suggest_target,
)

TOPICS = ["offers", "order-updates"]


def targets(headers: list[str], overrides: dict[str, str] | None = None) -> list[str]:
    return [c.target for c in build_columns(headers, overrides=overrides or {}, topic_slugs=TOPICS)]


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ("Customer Id", "external_id"),
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("First Name", "first_name"),
        ("Surname", "last_name"),
        ("Country Code", "country"),
        ("Accepts Marketing", "push_opt_in"),
        ("Tags", "interests"),
        ("Time Zone", "timezone"),
        ("Locale", "language"),
        ("Device Token", "device_token"),
        ("Offers", "topic:offers"),
        ("offers_opt_in", "topic:offers"),
        ("Order Updates Opt-In", "topic:order-updates"),
        ("offers consent source", "topic_source:offers"),
        ("Offers Consent Time", "topic_time:offers"),
        ("Loyalty Tier", "attribute:loyalty_tier"),
        ("!!!", "ignore"),
    ],
)
def test_common_names_are_pre_filled(header: str, target: str) -> None:
    assert suggest_target(header, topic_slugs=TOPICS) == target


aliases = st.sampled_from(["external_id", "first_name", "last_name", "country", "email", "time_zone"])


@given(name=aliases, data=st.data())
def test_headers_match_case_and_space_insensitively(name: str, data: st.DataObject) -> None:
    spelled = "".join(
        data.draw(st.sampled_from([ch.upper(), ch.lower()])) + data.draw(st.sampled_from(["", " ", "  "]))
        for ch in name.replace("_", data.draw(st.sampled_from(["_", " ", "-", ""])))
    )
    padded = data.draw(st.sampled_from(["", " ", "\t"])) + spelled + data.draw(st.sampled_from(["", " "]))
    assert normalize_header(padded) == normalize_header(name)
    assert suggest_target(padded, topic_slugs=[]) == suggest_target(name, topic_slugs=[])


def test_overrides_win_and_are_matched_like_headers() -> None:
    headers = ["Kunden-Nr", "Mail", "Plan"]
    assert targets(headers, {"kunden nr": "external_id", "PLAN": "ignore"}) == [
        "external_id",
        "email",
        "ignore",
    ]


def test_missing_key_column_is_reported_with_the_columns_found() -> None:
    with pytest.raises(ImportFileError, match="No column holds external_id") as excinfo:
        build_columns(["Name", "Mail"], overrides={}, topic_slugs=[])
    assert "Name, Mail" in excinfo.value.message


def test_two_columns_on_one_field_are_refused() -> None:
    with pytest.raises(ImportFileError, match="“E-mail” and “Email Address” both map to email"):
        build_columns(["id", "E-mail", "Email Address"], overrides={}, topic_slugs=[])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Nope": "email"}, "the file does not have: Nope"),
        ({"Mail": "e-mail"}, "“e-mail” is not a field"),
        ({"Mail": "topic:unknown"}, "There is no topic “unknown”"),
        ({"Mail": "attribute:Bad Key"}, "not a valid attribute key"),
    ],
)
def test_bad_overrides_are_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        build_columns(["id", "Mail"], overrides=overrides, topic_slugs=TOPICS)


def test_attribute_keys_are_slugs() -> None:
    assert attribute_key("Lifetime Value (€)") == "lifetime_value"
    assert attribute_key("  VIP?  ") == "vip"
    assert len(attribute_key("x" * 100)) == 64


def test_map_option_parsing() -> None:
    assert parse_mapping_option(["Customer Id=external_id", "a=b=email"]) == {
        "Customer Id": "external_id",
        "a=b": "email",
    }
    with pytest.raises(ImportFileError, match="File column=field"):
        parse_mapping_option(["external_id"])
