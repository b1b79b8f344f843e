"""The admin import flow through the test client, Celery tasks for big files, and exports."""

from __future__ import annotations

import csv
import io
from typing import Any

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from audiences.models import ImportJob, Subscriber
from audiences.resources import SubscriberResource
from audiences.services import audience_import_file
from audiences.tasks import preview_import_job, run_import_job
from tests.factories import TopicFactory

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:audiences_importjob_add")
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def media_in_tmp(settings: Any, tmp_path: Any) -> None:
    """Uploaded files go to a temporary MEDIA_ROOT, not the developer's var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"


def upload(client: Client, text: str, name: str = "shop.csv", **fields: Any) -> Any:
    data = {"file": SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv"), **fields}
    return client.post(ADD_URL, data, follow=True)


def job_url(job: ImportJob, view: str = "change") -> str:
    return reverse(f"admin:audiences_importjob_{view}", args=[job.pk])


def test_upload_shows_a_dry_run_preview_with_mapping_and_errors(admin_client_logged_in: Client) -> None:
    TopicFactory(slug="offers")
    response = upload(
        admin_client_logged_in,
        "Customer Id;E-mail;Country Code;Offers;Loyalty\nc1;a@example.com;DE;no;3\nc2;bad;Spain;yes;4.5\n",
    )
    assert response.status_code == 200
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.PREVIEWED
    page = response.content.decode()
    assert "This is a check (dry run): nothing has been written yet." in page
    assert "UTF-8, semicolon-separated" in page
    # Counts and every error with its line, column and what to do.
    assert (job.created_count, job.error_count) == (1, 3)
    for message in (
        "“bad” is not a valid email address.",
        "“Spain” is not an ISO 3166-1",
        "needs its consent",
    ):
        assert message in page
    assert "<td>3</td><td>Country Code</td>" in page
    # The mapping form is pre-filled from the headers.
    assert '<option value="external_id" selected>' in page
    assert '<option value="topic:offers" selected>' in page
    assert '<option value="number" selected>' in page  # Loyalty inferred as a number
    # All-or-nothing: no confirm button while rows are invalid.
    assert 'id="confirm-import"' not in page and 'id="confirm-blocked"' in page
    assert not Subscriber.objects.exists()


def test_remap_then_confirm_imports(admin_client_logged_in: Client) -> None:
    response = upload(admin_client_logged_in, "Kundennummer,Mail,Stufe\nk1,k@example.com,gold\n")
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED and "No column holds external_id" in job.message
    # The columns are still offered for mapping, with their suggestions.
    page = response.content.decode()
    assert 'id="mapping-form"' in page and '<option value="email" selected>' in page
    mapping = {"column_0": "external_id", "column_1": "ignore", "column_2": "attribute:stufe"}
    response = admin_client_logged_in.post(
        job_url(job, "mapping"), {**mapping, "segment_name": "Gold club"}, follow=True
    )
    job.refresh_from_db()
    assert job.status == ImportJob.Status.PREVIEWED and job.mapping["columns"]["Mail"] == "ignore"
    assert job.mapping["columns"]["Kundennummer"] == "external_id"
    assert 'id="confirm-import"' in response.content.decode()
    response = admin_client_logged_in.post(job_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.COMPLETED and job.created_count == 1
    assert "Imported: 1 created, 0 updated, 0 unchanged." in response.content.decode()
    subscriber = Subscriber.objects.get(external_id="k1")
    assert (subscriber.email, subscriber.attributes) == ("", {"stufe": "gold"})
    # Confirming twice does nothing more.
    admin_client_logged_in.post(job_url(job, "confirm"))
    assert Subscriber.objects.count() == 1


def test_skip_invalid_rows_from_the_admin(admin_client_logged_in: Client) -> None:
    upload(admin_client_logged_in, "external_id,email\nc1,a@example.com\nc2,bad\n", skip_invalid="on")
    job = ImportJob.objects.get()
    assert job.skip_invalid and job.error_count == 1
    admin_client_logged_in.post(job_url(job, "confirm"))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.COMPLETED
    assert list(Subscriber.objects.values_list("external_id", flat=True)) == ["c1"]


def test_file_over_the_limit_is_refused_at_upload(admin_client_logged_in: Client, settings: Any) -> None:
    settings.NOTIFYHUB_IMPORT_MAX_BYTES = 10
    response = upload(admin_client_logged_in, "external_id\nc1\nc2\n")
    assert "the import limit is 0.0 KB" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_html_in_names_is_escaped_in_preview_changelist_and_change_page(
    admin_client_logged_in: Client,
) -> None:
    response = upload(admin_client_logged_in, f"external_id,first_name\nx1,{SCRIPT}\n")
    assert SCRIPT not in response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.content.decode()
    admin_client_logged_in.post(job_url(ImportJob.objects.get(), "confirm"))
    subscriber = Subscriber.objects.get(external_id="x1")
    assert subscriber.first_name == SCRIPT  # stored verbatim
    for url in (
        reverse("admin:audiences_subscriber_changelist"),
        reverse("admin:audiences_subscriber_change", args=[subscriber.pk]),
        reverse("admin:audiences_importjob_changelist"),
    ):
        page = admin_client_logged_in.get(url).content.decode()
        assert SCRIPT not in page, url
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;"
        in admin_client_logged_in.get(reverse("admin:audiences_subscriber_changelist")).content.decode()
    )


def test_big_files_run_as_tasks_with_progress(
    admin_client_logged_in: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.NOTIFYHUB_IMPORT_SYNC_MAX_BYTES = 10
    rows = "".join(f"b{i},b{i}@example.com\n" for i in range(50))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(admin_client_logged_in, "external_id,email\n" + rows)
    job = ImportJob.objects.get()
    # The request did not parse the file: it queued the check and shows a progress bar.
    assert job.status == ImportJob.Status.UPLOADED and len(callbacks) == 1
    assert 'id="import-progress"' in response.content.decode()
    status = admin_client_logged_in.get(job_url(job, "status")).json()
    assert (status["status"], status["finished"]) == ("uploaded", False)

    preview_import_job.apply(args=[job.pk])
    status = admin_client_logged_in.get(job_url(job, "status")).json()
    assert (status["status"], status["finished"], status["total_rows"], status["percent"]) == (
        "previewed",
        True,
        50,
        100.0,
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        admin_client_logged_in.post(job_url(job, "confirm"))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.IMPORTING and len(callbacks) == 1
    assert not Subscriber.objects.exists()
    run_import_job.apply(args=[job.pk])
    run_import_job.apply(args=[job.pk])  # a duplicate delivery is a no-op
    job.refresh_from_db()
    assert (job.status, job.created_count, Subscriber.objects.count()) == (ImportJob.Status.COMPLETED, 50, 50)
    status = admin_client_logged_in.get(job_url(job, "status")).json()
    assert (status["rows_done"], status["total_rows"], status["errors"]) == (50, 50, 0)


def test_status_endpoint_needs_a_staff_login(admin_client_logged_in: Client) -> None:
    upload(admin_client_logged_in, "external_id\nc1\n")
    response = Client().get(job_url(ImportJob.objects.get(), "status"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("value", ["=1+2", "+49 30 123", "-10", "@SUM(A1)", "\tTAB", "\rCR"])
def test_formula_cells_are_stored_verbatim_and_escaped_in_exports(tmp_path: Any, value: str) -> None:
    from audiences.csv_import import ImportOptions

    path = tmp_path / "f.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["external_id", "first_name", "city"], ["f1", value, value]])
    summary = audience_import_file(path=path, options=ImportOptions(file_name="f.csv"))
    assert summary.written, summary.errors
    subscriber = Subscriber.objects.get(external_id="f1")
    assert (subscriber.first_name, subscriber.city) == (value, value)

    dataset = SubscriberResource().export(queryset=Subscriber.objects.all())
    exported = next(csv.DictReader(io.StringIO(dataset.export("csv"), newline="")))
    assert (exported["first_name"], exported["city"]) == ("'" + value, "'" + value)
    workbook = openpyxl.load_workbook(io.BytesIO(dataset.export("xlsx")))
    sheet = workbook.active
    header = [cell.value for cell in sheet[1]]
    row = [cell.value for cell in sheet[2]]
    # XML (inside XLSX) normalizes a CR to LF when read back; the escaping quote is what matters.
    assert row[header.index("first_name")] == ("'" + value).replace("\r", "\n")
