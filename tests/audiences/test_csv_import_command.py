"""``manage.py import_audience``: the admin's importer on the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from audiences.management.commands.import_audience import Command
from audiences.models import Segment, Subscriber

pytestmark = pytest.mark.django_db

GOOD = "Customer Id,E-mail,Country Code\nc1,a@example.com,DE\nc2,b@example.com,ES\n"
BAD = "Customer Id,E-mail,Country Code\nc1,a@example.com,DE\nc2,nope,Spain\n"


def csv_file(tmp_path: Path, text: str, name: str = "shop.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("import_audience", *args, stdout=out)
    return out.getvalue()


def test_import_prints_the_summary_and_writes(tmp_path: Path) -> None:
    out = command(str(csv_file(tmp_path, GOOD)))
    assert "File: shop.csv (UTF-8, comma-separated)" in out
    assert "Customer Id                    → external_id" in out
    assert "Rows: 2  created: 2  updated: 0  unchanged: 0  errors: 0 (in 0 rows)" in out
    assert "line 2: c1 — email='a@example.com', country='DE'" in out
    assert "Imported: 2 created, 0 updated, 0 unchanged." in out
    assert Subscriber.objects.count() == 2
    again = command(str(csv_file(tmp_path, GOOD)))
    assert "created: 0  updated: 0  unchanged: 2" in again


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    out = command(str(csv_file(tmp_path, GOOD)), "--dry-run")
    assert "created: 2" in out and "Nothing was written." in out
    assert not Subscriber.objects.exists()


def test_errors_exit_non_zero_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = csv_file(tmp_path, BAD)
    # run_from_argv (what manage.py calls) closes every connection when it ends, which
    # would close the test's own transaction on PostgreSQL.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    with pytest.raises(SystemExit) as excinfo:
        Command().run_from_argv(["manage.py", "import_audience", str(path)])
    assert excinfo.value.code == 1
    captured = capsys.readouterr()
    assert "line 3, column E-mail: “nope” is not a valid email address." in captured.out
    assert "line 3, column Country Code: “Spain” is not an ISO 3166-1 country code" in captured.out
    assert "1 rows have errors; nothing was written" in captured.err
    assert not Subscriber.objects.exists()


def test_dry_run_with_errors_also_exits_non_zero(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="1 rows have errors"):
        command(str(csv_file(tmp_path, BAD)), "--dry-run")


def test_skip_invalid_imports_the_valid_rows(tmp_path: Path) -> None:
    out = command(str(csv_file(tmp_path, BAD)), "--skip-invalid")
    assert "errors: 2 (in 1 rows)" in out
    assert "Imported: 1 created, 0 updated, 0 unchanged; 1 invalid rows skipped." in out
    assert list(Subscriber.objects.values_list("external_id", flat=True)) == ["c1"]


def test_file_level_problems_exit_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(CommandError, match="cannot be imported"):
        command(str(path))
    with pytest.raises(CommandError, match="is not a file"):
        command(str(tmp_path / "missing.csv"))


def test_mapping_options_and_file(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "Kunden-Nr;Mail;Stufe\nk1;k@example.com;3\n")
    with pytest.raises(CommandError):
        command(str(path), "--dry-run")  # no external_id column without a mapping
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"columns": {"Kunden-Nr": "external_id"}, "attribute_types": {"stufe": "text"}})
    )
    out = command(str(path), "--mapping-file", str(mapping), "--map", "Mail=email", "--segment", "Kunden")
    assert "Stufe                          → attribute:stufe (text)" in out
    subscriber = Subscriber.objects.get(external_id="k1")
    assert (subscriber.email, subscriber.attributes) == ("k@example.com", {"stufe": "3"})
    assert Segment.objects.get(name="Kunden").members.count() == 1
    with pytest.raises(CommandError, match="File column=field"):
        command(str(path), "--map", "nonsense")
