"""Writes for CSV imports: the ImportJob lifecycle around the import engine.

upload (``import_job_create``) → check (``import_job_preview``: a dry run that fills
the preview) → optionally a new mapping (``import_job_set_mapping``, back to
"uploaded") → ``import_job_confirm`` → ``import_job_run``. Small files are checked
and imported inside the request; bigger ones (``import_job_runs_in_background``) by
Celery tasks enqueued after commit, reporting progress through the cache.
The command line calls :func:`audience_import_file`, the same engine without a job.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from audiences.csv_import import (
    ImportOptions,
    ImportProgress,
    ImportSummary,
    import_audience,
)
from audiences.csv_import.decoding import check_size
from audiences.models import ImportJob
from notifyhub.exceptions import ApplicationError

# Files up to this size are checked and imported inside the admin request (about a
# second of work); anything bigger runs as a Celery task with a progress bar.
DEFAULT_SYNC_MAX_BYTES = 1024 * 1024
_PROGRESS_TTL = 24 * 3600


class ImportJobError(ApplicationError):
    """An import job cannot do what was asked in its current state."""


def audience_import_file(*, path: Path, options: ImportOptions, progress: Any = None) -> ImportSummary:
    """Import (or dry-run) a CSV file from disk — the command line's entry point.

    Same transaction and idempotency contract as the engine: nothing is written
    unless the file is valid (or ``skip_invalid``), in one transaction; running it
    twice on the same file changes nothing the second time.
    """
    with path.open("rb") as stream:
        return import_audience(stream, size=path.stat().st_size, options=options, progress=progress)


def import_job_runs_in_background(job: ImportJob) -> bool:
    return job.size_bytes > getattr(settings, "NOTIFYHUB_IMPORT_SYNC_MAX_BYTES", DEFAULT_SYNC_MAX_BYTES)


def import_job_create(
    *,
    upload: UploadedFile,
    created_by: AbstractBaseUser | None,
    skip_invalid: bool = False,
    segment_name: str = "",
    mapping: Mapping[str, str] | None = None,
) -> ImportJob:
    """Store an uploaded file as a new job ("uploaded"); nothing is parsed yet.

    A file over ``NOTIFYHUB_IMPORT_MAX_BYTES`` raises ``ImportFileError`` before it is
    stored. Not idempotent: each upload is a new job.
    """
    size = upload.size or 0
    check_size(size, limit=settings.NOTIFYHUB_IMPORT_MAX_BYTES)
    name = Path(upload.name or "import.csv").name[:255]
    job = ImportJob(
        original_name=name,
        size_bytes=size,
        skip_invalid=skip_invalid,
        segment_name=segment_name.strip(),
        mapping={"columns": dict(mapping or {}), "attribute_types": {}},
        created_by=created_by if created_by is not None and created_by.pk else None,  # type: ignore[misc]
    )
    job.file.save(name, upload, save=False)
    job.save()
    return job


def _run_engine(job: ImportJob, *, dry_run: bool) -> ImportSummary:
    """Stream the job's stored file through the import engine, reporting progress."""
    with job.file.open("rb") as stream:
        return import_audience(
            stream,
            size=job.size_bytes,
            options=_options(job, dry_run=dry_run),
            progress=_progress_reporter(job.pk),
        )


def _options(job: ImportJob, *, dry_run: bool) -> ImportOptions:
    mapping = job.mapping or {}
    return ImportOptions(
        file_name=job.original_name,
        mapping=mapping.get("columns") or {},
        attribute_types=mapping.get("attribute_types") or {},
        skip_invalid=job.skip_invalid,
        segment_name=job.segment_name,
        dry_run=dry_run,
        actor_id=job.created_by_id,
    )


def progress_key(job_id: int) -> str:
    return f"notifyhub:import:{job_id}:progress"


def _progress_reporter(job_id: int) -> Any:
    last = [0.0]

    def report(progress: ImportProgress) -> None:
        # The import's writes are one open transaction, so progress cannot live in the
        # job row (nobody else would see it before commit): it goes to the shared cache.
        now = time.monotonic()
        if now - last[0] < 0.5 and progress.fraction < 1.0:
            return
        last[0] = now
        cache.set(progress_key(job_id), progress.__dict__, _PROGRESS_TTL)

    return report


def _store_summary(job: ImportJob, summary: ImportSummary, *, status: str) -> None:
    job.status = status
    job.encoding = summary.encoding
    job.delimiter = summary.delimiter
    job.total_rows = summary.total_rows
    job.processed_rows = summary.total_rows if status != ImportJob.Status.FAILED else 0
    job.created_count = summary.created
    job.updated_count = summary.updated
    job.unchanged_count = summary.unchanged
    job.error_count = summary.error_count
    job.errors = summary.errors
    job.preview = summary.to_json()
    job.message = summary.file_error


def import_job_preview(*, job_id: int) -> ImportJob | None:
    """Dry-run the job's file with its mapping and store the preview ("previewed").

    Writes only the job row. Idempotent: runs for a job that is "uploaded" (or still
    "checking" after a crash); any other state returns the job unchanged.
    """
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.UPLOADED, ImportJob.Status.PREVIEWING]
    ).update(status=ImportJob.Status.PREVIEWING)
    job = ImportJob.objects.filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    summary = _run_engine(job, dry_run=True)
    _store_summary(
        job, summary, status=ImportJob.Status.FAILED if summary.file_error else ImportJob.Status.PREVIEWED
    )
    # Only if nobody changed the mapping (back to "uploaded") meanwhile.
    ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.PREVIEWING).update(
        **{f: getattr(job, f) for f in _SUMMARY_FIELDS}
    )
    job.refresh_from_db()
    return job


_SUMMARY_FIELDS = (
    "status",
    "encoding",
    "delimiter",
    "total_rows",
    "processed_rows",
    "created_count",
    "updated_count",
    "unchanged_count",
    "error_count",
    "errors",
    "preview",
    "message",
)


@transaction.atomic
def import_job_set_mapping(
    *,
    job: ImportJob,
    columns: Mapping[str, str],
    attribute_types: Mapping[str, str],
    skip_invalid: bool,
    segment_name: str,
) -> ImportJob:
    """Change the mapping/options of a job that is not importing yet; it must be checked again.

    Enqueues the new check after commit when the file is big (the caller runs it
    otherwise). Atomic; a job already importing or done raises ``ImportJobError``.
    """
    locked = ImportJob.objects.select_for_update().get(pk=job.pk)
    if locked.status not in (ImportJob.Status.UPLOADED, ImportJob.Status.PREVIEWED, ImportJob.Status.FAILED):
        raise ImportJobError(
            "This import is already running or finished; upload the file again to change it."
        )
    locked.mapping = {"columns": dict(columns), "attribute_types": dict(attribute_types)}
    locked.skip_invalid = skip_invalid
    locked.segment_name = segment_name.strip()
    locked.status = ImportJob.Status.UPLOADED
    locked.save(update_fields=["mapping", "skip_invalid", "segment_name", "status"])
    if import_job_runs_in_background(locked):
        import_job_enqueue_preview(job=locked)
    return locked


def import_job_enqueue_preview(*, job: ImportJob) -> None:
    """Queue the dry run after the current transaction commits."""
    from audiences.tasks import preview_import_job

    cache.delete(progress_key(job.pk))
    transaction.on_commit(lambda: preview_import_job.delay(job.pk))


@transaction.atomic
def import_job_confirm(*, job: ImportJob) -> ImportJob:
    """Confirm a checked job ("previewed" → "importing"); big files are enqueued after commit.

    Atomic and idempotent: confirming a job that is already importing or done
    returns it unchanged. A preview with errors is refused unless invalid rows may be
    skipped — all-or-nothing is the default.
    """
    locked = ImportJob.objects.select_for_update().get(pk=job.pk)
    if locked.status in (ImportJob.Status.IMPORTING, ImportJob.Status.COMPLETED):
        return locked
    if locked.status != ImportJob.Status.PREVIEWED:
        raise ImportJobError("Check the file first: only a checked import can be confirmed.")
    if locked.error_count and not locked.skip_invalid:
        raise ImportJobError(
            f"{locked.error_count:,} rows have errors and nothing is imported while any row is invalid. "
            "Fix the file and upload it again, or choose “Skip invalid rows”."
        )
    locked.status = ImportJob.Status.IMPORTING
    locked.started_at = None
    locked.save(update_fields=["status", "started_at"])
    cache.delete(progress_key(locked.pk))
    if import_job_runs_in_background(locked):
        from audiences.tasks import run_import_job

        transaction.on_commit(lambda: run_import_job.delay(locked.pk))
    return locked


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Import a confirmed job's file: validate all, then write in one transaction.

    Idempotent: only an "importing" job that nobody has started (or whose start is
    older than the task time limit, i.e. a crashed worker whose transaction rolled
    back) is claimed; the data writes are one transaction, so a crash leaves nothing
    half-written and the retry starts over.
    """
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    claimed = (
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.IMPORTING)
        .filter(started_at__isnull=True)
        .update(started_at=now)
    ) or ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.IMPORTING, started_at__lt=stale).update(
        started_at=now
    )
    job = ImportJob.objects.filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    summary = _run_engine(job, dry_run=False)
    _store_summary(
        job, summary, status=ImportJob.Status.COMPLETED if summary.written else ImportJob.Status.FAILED
    )
    if not summary.written and not summary.file_error:
        job.message = "Nothing was imported: the file has errors. Fix them, or choose “Skip invalid rows”."
    job.finished_at = timezone.now()
    job.save()
    return job


def import_job_progress(*, job: ImportJob) -> dict[str, Any]:
    """What the progress bar shows: rows done / total and errors so far (a read)."""
    live = cache.get(progress_key(job.pk)) or {}
    running = job.status in (
        ImportJob.Status.PREVIEWING,
        ImportJob.Status.IMPORTING,
        ImportJob.Status.UPLOADED,
    )
    done = job.status in (ImportJob.Status.PREVIEWED, ImportJob.Status.COMPLETED, ImportJob.Status.FAILED)
    return {
        "status": job.status,
        "status_label": job.get_status_display(),
        "phase": live.get("phase", ""),
        "rows_done": live.get("rows_done", 0) if running else job.processed_rows or (job.total_rows or 0),
        "total_rows": live.get("total_rows") or job.total_rows,
        "errors": live.get("errors", 0) if running else job.error_count,
        "percent": round(100 * (live.get("fraction", 0.0) if running else 1.0 if done else 0.0), 1),
        "finished": done,
        "message": job.message,
    }
