"""CSV import throughput and memory on PostgreSQL, next to ``COPY`` of the same file.

A realistic shop/mailing-tool export (100,000 rows; 1,000,000 with
``NOTIFYHUB_BENCH_FULL=1``) with every kind of column — names with accents,
language, time zone, country, interests, a topic opt-in with consent evidence,
typed custom attributes and device tokens — goes through the real import path
(``audience_import_file``: encoding/delimiter detection, validation, duplicate
check, comparison with the database, set-based writes, consent ledger) in a child
process, so the peak RSS it reports is the import's own and not pytest's. Then
PostgreSQL ``COPY`` loads the same file into a scratch table of text columns: the
physical limit, with no validation at all.

Run: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_imports .venv/bin/python -m pytest
tests/benchmarks/test_csv_import.py -m benchmark -s --create-db`` (or ``make bench``).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from audiences.models import ConsentRecord, Device, Subscriber
from tests.benchmarks.harness import record
from tests.factories import TopicFactory
from tests.services import require_postgres

FULL = os.environ.get("NOTIFYHUB_BENCH_FULL", "").lower() in {"1", "true", "yes"}
ROWS = 1_000_000 if FULL else 100_000
TARGET_ROWS_PER_S = 15_000
TARGET_RSS_MIB = 500
ROOT = Path(__file__).resolve().parents[2]

HEADER = [
    "Customer Id", "E-mail", "First Name", "Last Name", "Language", "Time Zone", "Country Code", "City",
    "Tags", "Offers", "Consent Source", "Consent Time", "Loyalty Points", "VIP", "Signup Date",
    "Device Token", "Platform",
]  # fmt: skip
FIRST = [
    "Ada",
    "Zoë",
    "José",
    "Søren",
    "Łukasz",
    "Anaïs",
    "Mehmet",
    "Chloé",
    "Björn",
    "Ngozi",
    "Renée",
    "Jürgen",
]
LAST = ["Lovelace", "García", "Müller", "Dvořák", "O'Brien", "Nguyễn", "Rossi", "Silva", "Öztürk", "Smith"]
PLACES = [
    ("de", "Europe/Berlin", "DE", "Berlin"),
    ("es", "Europe/Madrid", "ES", "Sevilla"),
    ("fr", "Europe/Paris", "FR", "Lyon"),
    ("pt-br", "America/Sao_Paulo", "BR", "São Paulo"),
    ("en", "America/New_York", "US", "New York"),
    ("it", "Europe/Rome", "IT", "Milano"),
    ("ar", "Asia/Dubai", "AE", "Dubai"),
]
TAGS = ["running", "yoga", "books", "chess", "travel", "coffee", "gaming", "cooking"]


def write_export(path: Path, rows: int) -> None:
    rng = random.Random(3)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for i in range(rows):
            language, tz, country, city = rng.choice(PLACES)
            opted = rng.random() < 0.4
            device = rng.random() < 0.6
            writer.writerow(
                [
                    f"cust-{i:08d}",
                    f"customer{i}@example.com",
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    language,
                    tz,
                    country,
                    city,
                    "|".join(rng.sample(TAGS, rng.randint(0, 3))),
                    "yes" if opted else rng.choice(["no", ""]),
                    "checkout form" if opted else "",
                    f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 10:{rng.randint(0, 59):02d}"
                    if opted
                    else "",
                    str(rng.randint(0, 5000)),
                    rng.choice(["true", "false"]),
                    f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    f"fcm-{i:010d}-{rng.getrandbits(64):016x}" if device else "",
                    rng.choice(["android", "ios", "web"]) if device else "",
                ]
            )


CHILD = """
import json, resource, sys, time
import django
django.setup()
from pathlib import Path
from audiences.csv_import import ImportOptions
from audiences.services import audience_import_file
path = Path(sys.argv[1])
started = time.perf_counter()
summary = audience_import_file(path=path, options=ImportOptions(file_name=path.name))
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds, "written": summary.written, "created": summary.created,
    "updated": summary.updated, "unchanged": summary.unchanged, "errors": summary.error_count,
    "first_errors": summary.errors[:3], "file_error": summary.file_error,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def import_in_child(path: Path) -> dict[str, float]:
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    url = f"postgres://{settings['USER']}@{host}:{port}/{settings['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    # The full-size file (about 150 MB) is over the default 100 MB upload limit.
    env["NOTIFYHUB_IMPORT_MAX_BYTES"] = str(max(100 << 20, 2 * path.stat().st_size))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def copy_seconds(path: Path) -> float:
    columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_scratch")
        cursor.execute(f"CREATE TABLE bench_copy_scratch ({columns})")
        started = time.perf_counter()
        sql = "COPY bench_copy_scratch FROM STDIN WITH (FORMAT csv, HEADER true)"
        with cursor.cursor.copy(sql) as copy, path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        seconds = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM bench_copy_scratch")
        assert cursor.fetchone()[0] == ROWS
        cursor.execute("DROP TABLE bench_copy_scratch")
    return seconds


@pytest.mark.django_db(transaction=True)
def test_csv_import_throughput_and_memory(tmp_path: Path) -> None:
    require_postgres()
    if connection.vendor != "postgresql":
        pytest.skip("the import benchmark runs on PostgreSQL (DATABASE_URL=postgres://…)")
    TopicFactory(slug="offers", name="Offers", default_opt_in=False)
    path = tmp_path / "shop-export.csv"
    write_export(path, ROWS)
    size_mib = path.stat().st_size / (1 << 20)

    copy = copy_seconds(path)
    first = import_in_child(path)
    assert first["written"] and first["errors"] == 0, first
    assert first["created"] == ROWS == Subscriber.objects.count()
    assert Device.objects.count() > ROWS * 0.55 and ConsentRecord.objects.count() > ROWS * 1.3
    again = import_in_child(path)  # the same file again: every row compared, nothing written
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, ROWS), again

    rate = ROWS / first["seconds"]
    copy_rate = ROWS / copy
    record(
        f"csv_import_{ROWS}",
        metrics={
            "rows": ROWS,
            "file_mib": size_mib,
            "import_seconds": first["seconds"],
            "import_rows_per_s": rate,
            "import_peak_rss_mib": first["peak_rss_mib"],
            "reimport_seconds": again["seconds"],
            "reimport_rows_per_s": ROWS / again["seconds"],
            "reimport_peak_rss_mib": again["peak_rss_mib"],
            "import_time_vs_copy": first["seconds"] / copy,
        },
        baseline={"copy_seconds": copy, "copy_rows_per_s": copy_rate},
        notes="real import path in a child process (peak RSS includes Django); COPY into a text-column table",
    )
    assert rate >= TARGET_ROWS_PER_S, f"{rate:,.0f} rows/s < {TARGET_ROWS_PER_S:,}"
    assert first["peak_rss_mib"] <= TARGET_RSS_MIB and again["peak_rss_mib"] <= TARGET_RSS_MIB
