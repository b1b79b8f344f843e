"""Celery tasks of the audiences app: thin, id-based, idempotent (status guards in the services)."""

from __future__ import annotations

from celery import shared_task

from audiences.services.imports import import_job_preview, import_job_run


@shared_task(name="audiences.tasks.preview_import_job")
def preview_import_job(job_id: int) -> None:
    """Dry-run a big uploaded file and fill the job's preview (re-runnable)."""
    import_job_preview(job_id=job_id)


@shared_task(name="audiences.tasks.run_import_job")
def run_import_job(job_id: int) -> None:
    """Import a confirmed job; the service claims it, so a duplicate delivery does nothing."""
    import_job_run(job_id=job_id)


# --- Client API: behaviour aggregates -------------------------------------------------


@shared_task(name="audiences.tasks.subscribers_recompute_sessions_30d")
def subscribers_recompute_sessions_30d() -> int:
    """Hourly (CELERY_BEAT_SCHEDULE): slide every subscriber's 30-day session window.

    Safe to run twice or concurrently: the service recomputes counts from the events
    table and writes only rows whose stored count is wrong.
    """
    from audiences.services.events import subscribers_recompute_sessions_30d as recompute

    return recompute()
