"""The import engine against the database: upserts, consent, all-or-nothing, bad files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.csv_import import ImportOptions, ImportSummary
from audiences.models import (
    AttributeDefinition,
    ConsentRecord,
    Device,
    Segment,
    SegmentMember,
    Subscriber,
    TopicPreference,
)
from audiences.services import audience_import_file
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, text: str, *, name: str = "people.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def run(path: Path, **options: object) -> ImportSummary:
    return audience_import_file(path=path, options=ImportOptions(file_name=path.name, **options))  # type: ignore[arg-type]


def test_new_subscribers_are_created_with_consent_records(tmp_path: Path) -> None:
    offers = TopicFactory(slug="offers", default_opt_in=False)
    path = write(
        tmp_path,
        "Customer Id,E-mail,First Name,Country Code,Tags,Offers,consent_source,consent_time\n"
        "c1,ada@example.com,Ada,de,books|chess,yes,checkout form,2024-03-01 10:00\n"
        "c2,bob@example.com,Bob,ES,,no,,\n",
    )
    summary = run(path)
    assert summary.ok and summary.written
    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    ada = Subscriber.objects.get(external_id="c1")
    assert (ada.email, ada.first_name, ada.country, ada.interests) == (
        "ada@example.com",
        "Ada",
        "DE",
        ["books", "chess"],
    )
    assert TopicPreference.objects.get(subscriber=ada, topic=offers).opted_in is True
    opt_in = ConsentRecord.objects.get(subscriber=ada, field="topic")
    assert (opt_in.source, opt_in.source_detail) == ("import", "people.csv: checkout form")
    assert (opt_in.old_value, opt_in.new_value) == (False, True)
    assert opt_in.created_at == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)  # when the person consented
    # Every new subscriber gets its first push ledger entry, like from the admin or the API.
    assert (
        ConsentRecord.objects.filter(field="push_opt_in", source="import", old_value__isnull=True).count()
        == 2
    )
    bob_choice = ConsentRecord.objects.get(subscriber__external_id="c2", field="topic")
    assert (bob_choice.new_value, bob_choice.source_detail) == (False, "people.csv")


def test_reimporting_the_same_file_changes_nothing(tmp_path: Path) -> None:
    TopicFactory(slug="offers")
    path = write(
        tmp_path,
        "external_id,email,interests,Offers,consent_source,consent_time,plan,device_token,platform\n"
        "c1,a@example.com,x;y,yes,web,2024-01-01,gold,tok-1,android\n"
        "c2,b@example.com,,no,,,silver,,\n",
    )
    assert run(path).created == 2
    records = ConsentRecord.objects.count()
    updated_at = dict(Subscriber.objects.values_list("external_id", "updated_at"))
    again = run(path)
    assert (again.created, again.updated, again.unchanged, again.error_count) == (0, 0, 2, 0)
    assert ConsentRecord.objects.count() == records
    assert dict(Subscriber.objects.values_list("external_id", "updated_at")) == updated_at
    assert Device.objects.count() == 1


def test_blank_cells_never_overwrite(tmp_path: Path) -> None:
    SubscriberFactory(
        external_id="c1", email="keep@example.com", first_name="Keep", city="Berlin", attributes={"a": 1}
    )
    summary = run(write(tmp_path, "external_id,email,first_name,city,b\nc1,,New,,2\n"))
    assert (summary.updated, summary.samples["updated"][0]["changes"]) == (
        1,
        [("first_name", "Keep", "New"), ("b", None, 2)],
    )
    c1 = Subscriber.objects.get(external_id="c1")
    assert (c1.email, c1.first_name, c1.city, c1.attributes) == (
        "keep@example.com",
        "New",
        "Berlin",
        {"a": 1, "b": 2},
    )


def test_updates_keep_behaviour_and_preferences(tmp_path: Path) -> None:
    SubscriberFactory(external_id="c1", purchase_count=4, push_opt_in=False, frequency_limit="weekly")
    run(write(tmp_path, "external_id,city\nc1,Madrid\n"))
    c1 = Subscriber.objects.get(external_id="c1")
    assert (c1.city, c1.purchase_count, c1.push_opt_in, c1.frequency_limit) == ("Madrid", 4, False, "weekly")


def test_push_opt_in_change_is_recorded_with_old_value(tmp_path: Path) -> None:
    SubscriberFactory(external_id="c1", push_opt_in=False)
    run(
        write(
            tmp_path,
            "external_id,Accepts Marketing,consent_source,consent_time\nc1,yes,shop,2024-05-05T08:00Z\n",
        )
    )
    record = ConsentRecord.objects.get(subscriber__external_id="c1")
    assert (record.field, record.old_value, record.new_value, record.source) == (
        "push_opt_in",
        False,
        True,
        "import",
    )
    assert Subscriber.objects.get(external_id="c1").push_opt_in is True


def test_all_or_nothing_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, "external_id,email\nc1,a@example.com\nc2,broken\nc3,c@example.com\n")
    summary = run(path)
    assert not summary.written and summary.error_count == 1
    assert summary.errors == [
        {"line": 3, "column": "email", "message": "“broken” is not a valid email address."}
    ]
    assert (summary.created, summary.total_rows) == (2, 3)  # what would have happened
    assert not Subscriber.objects.exists() and not ConsentRecord.objects.exists()


def test_skip_invalid_commits_the_valid_rows(tmp_path: Path) -> None:
    summary = run(
        write(tmp_path, "external_id,email\nc1,a@example.com\nc2,broken\nc3,c@example.com\n"),
        skip_invalid=True,
    )
    assert summary.written and (summary.created, summary.error_count) == (2, 1)
    assert sorted(Subscriber.objects.values_list("external_id", flat=True)) == ["c1", "c3"]


def test_duplicate_external_id_is_a_row_error(tmp_path: Path) -> None:
    summary = run(
        write(tmp_path, "external_id,email\nc1,a@example.com\nc2,b@example.com\nc1,again@example.com\n")
    )
    assert summary.errors == [
        {
            "line": 4,
            "column": "external_id",
            "message": "external_id “c1” already appears on line 2; each subscriber may appear once per "
            "file. Merge the two rows or remove one.",
        }
    ]
    assert not Subscriber.objects.exists()


def test_missing_required_column_is_reported_before_any_row(tmp_path: Path) -> None:
    summary = run(write(tmp_path, "email,name\na@example.com,Ada\nbroken,Bob\n"))
    assert "No column holds external_id" in summary.file_error
    assert summary.total_rows == 0 and summary.errors == []


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFYHUB_IMPORT_MAX_BYTES = 1000
    # Not even valid text: had it been parsed, the error would be about the encoding.
    summary = run(write(tmp_path, "external_id\n" + "\x81" * 2000, encoding="latin-1"))
    assert summary.file_error.startswith("The file is 2.0 KB; the import limit is 1.0 KB")
    assert summary.encoding == "" and summary.total_rows == 0


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom", "cp1252"])
def test_names_round_trip_in_every_supported_encoding(tmp_path: Path, encoding: str) -> None:
    names = ["Zoë Straße", "Šárka Dvořák" if encoding != "cp1252" else "Šárka Müller", "Renée 🎉"]
    if encoding == "cp1252":
        names[2] = "Renée Œuvre"
    text = "external_id;first_name\n" + "".join(f"u{i};{name}\n" for i, name in enumerate(names))
    data = b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom" else text.encode(encoding)
    path = tmp_path / "names.csv"
    path.write_bytes(data)
    summary = run(path)
    assert summary.written, summary.file_error or summary.errors
    assert summary.delimiter == ";"
    assert [Subscriber.objects.get(external_id=f"u{i}").first_name for i in range(3)] == names


def test_tab_separated_file_with_odd_header_spelling(tmp_path: Path) -> None:
    summary = run(write(tmp_path, "  EXTERNAL ID \tE-Mail\tcountry code\nx1\tx@example.com\tfr\n"))
    assert summary.written and summary.delimiter == "\t"
    assert Subscriber.objects.filter(external_id="x1", email="x@example.com", country="FR").exists()


def test_unreadable_rows_are_row_errors_with_lines(tmp_path: Path) -> None:
    text = "external_id,first_name\nok1,Ada\nbad\nnul,A\x00B\nbig," + "x" * 10_001 + '\nquote,"never closed\n'
    summary = run(write(tmp_path, text))
    assert [(e["line"], e["column"]) for e in summary.errors] == [(3, ""), (4, ""), (5, ""), (6, "")]
    assert [
        "cells but the header" in summary.errors[0]["message"],
        "NUL" in summary.errors[1]["message"],
    ] == [True, True]
    assert (
        "limit is 10,000" in summary.errors[2]["message"] and "unterminated" in summary.errors[3]["message"]
    )
    assert not Subscriber.objects.exists()


def test_device_tokens(tmp_path: Path) -> None:
    other = DeviceFactory(token="taken-token")
    summary = run(
        write(
            tmp_path,
            "external_id,device_token,platform\nd1,new-token,iOS\nd2,taken-token,android\nd3,new-token,web\n",
        ),
        skip_invalid=True,
    )
    assert [(e["line"], e["column"]) for e in summary.errors] == [(4, "device_token"), (3, "device_token")]
    assert "already registered to another subscriber" in summary.errors[1]["message"]
    assert Device.objects.get(token="new-token").subscriber.external_id == "d1"
    assert Device.objects.get(token="taken-token").subscriber_id == other.subscriber_id  # never moved


def test_static_segment_from_the_import(tmp_path: Path) -> None:
    SubscriberFactory(external_id="old")
    summary = run(write(tmp_path, "external_id\nold\nnew1\nnew2\n"), segment_name="Spring fair")
    segment = Segment.objects.get(name="Spring fair")
    assert summary.segment == "Spring fair" and segment.kind == Segment.Kind.STATIC
    members = SegmentMember.objects.filter(segment=segment).values_list("subscriber__external_id", flat=True)
    assert sorted(members) == ["new1", "new2", "old"]
    taken = run(write(tmp_path, "external_id\nzzz\n", name="b.csv"), segment_name="spring FAIR")
    assert "already exists" in taken.file_error and not Subscriber.objects.filter(external_id="zzz").exists()


def test_attribute_types_inferred_declared_and_recorded(tmp_path: Path) -> None:
    AttributeDefinition.objects.create(key="score", type="number")
    summary = run(
        write(tmp_path, "external_id,score,VIP,Birthday,Plan\nu1,10,yes,1990-01-02,gold\nu2,11,no,,silver\n")
    )
    assert {c["header"]: c["type"] for c in summary.columns if c["type"]} == {
        "score": "number",
        "VIP": "boolean",
        "Birthday": "date",
        "Plan": "text",
    }
    assert Subscriber.objects.get(external_id="u1").attributes == {
        "score": 10,
        "vip": True,
        "birthday": "1990-01-02",
        "plan": "gold",
    }
    assert dict(AttributeDefinition.objects.filter(inferred=True).values_list("key", "type")) == {
        "vip": "boolean",
        "birthday": "date",
        "plan": "text",
    }
    bad = run(write(tmp_path, "external_id,score\nu3,lots\n", name="c.csv"))
    assert "is not a number" in bad.errors[0]["message"]


def test_queries_do_not_grow_with_rows(tmp_path: Path) -> None:
    TopicFactory(slug="offers")

    def queries(n: int, name: str) -> int:
        rows = "".join(
            f"{name}{i},{name}{i}@example.com,yes,web,2024-01-01,t-{name}{i},android\n" for i in range(n)
        )
        path = write(
            tmp_path,
            "external_id,email,offers,consent_source,consent_time,device_token,platform\n" + rows,
            name=name,
        )
        with CaptureQueriesContext(connection) as ctx:
            assert run(path).created == n
        return len(ctx.captured_queries)

    assert queries(20, "a") == queries(600, "b")
