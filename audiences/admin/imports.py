"""Admin for CSV imports: upload → check (dry-run preview, column mapping) → confirm.

Unfold-styled views on the ImportJob admin drive the one import engine
(``audiences.csv_import``) through ``audiences.services``. django-import-export's
row-by-row ``Resource`` import is not used for this: with validation it cannot reach
the 15,000 rows/s the issue asks for (see README, Decisions). Small files are checked
and imported inside the request; big ones run as Celery tasks and the page polls
``status.json`` for a progress bar.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.widgets import (
    UnfoldAdminFileFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from audiences.csv_import import ImportFileError, ImportSummary
from audiences.csv_import.decoding import DELIMITER_NAMES, ENCODING_LABELS
from audiences.csv_import.mapping import FIELDS, IGNORE, attribute_key
from audiences.csv_import.validation import ATTRIBUTE_TYPES
from audiences.models import ImportJob, Topic
from audiences.services import (
    ImportJobError,
    import_job_confirm,
    import_job_create,
    import_job_enqueue_preview,
    import_job_preview,
    import_job_progress,
    import_job_run,
    import_job_runs_in_background,
    import_job_set_mapping,
)

STATUS_COLOURS = {
    ImportJob.Status.UPLOADED.label: "info",
    ImportJob.Status.PREVIEWING.label: "info",
    ImportJob.Status.PREVIEWED.label: "warning",
    ImportJob.Status.IMPORTING.label: "info",
    ImportJob.Status.COMPLETED.label: "success",
    ImportJob.Status.FAILED.label: "danger",
    ImportJob.Status.CANCELLED.label: "danger",
}


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        widget=UnfoldAdminFileFieldWidget(attrs={"accept": ".csv,.tsv,.txt,text/csv"}),
        help_text=_(
            "UTF-8, UTF-16 or Windows-1252; separated by commas, semicolons or tabs. "
            "One row per subscriber, with a header row naming the columns."
        ),
    )
    segment_name = forms.CharField(
        label=_("Create a static segment from this import"),
        required=False,
        max_length=200,
        widget=UnfoldAdminTextInputWidget(attrs={"placeholder": _("Segment name (optional)")}),
    )
    skip_invalid = forms.BooleanField(
        label=_("Skip invalid rows"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_(
            "Import the valid rows and report the others. Off: nothing is imported while any row is invalid."
        ),
    )


def _target_choices(topics: list[tuple[str, str]], header: str) -> list[tuple[str, Any]]:
    key = attribute_key(header)
    choices: list[tuple[str, Any]] = [(IGNORE, _("— ignore this column —"))]
    choices.append((str(_("Fields")), [(name, label) for name, label in FIELDS.items()]))
    if topics:
        choices.append(
            (
                str(_("Topic opt-ins")),
                [(f"topic:{slug}", _("Opt-in: %(topic)s") % {"topic": name}) for slug, name in topics]
                + [
                    (f"topic_source:{slug}", _("Consent source: %(topic)s") % {"topic": name})
                    for slug, name in topics
                ]
                + [
                    (f"topic_time:{slug}", _("Consent time: %(topic)s") % {"topic": name})
                    for slug, name in topics
                ],
            )
        )
    if key:
        choices.append(
            (str(_("Custom attribute")), [(f"attribute:{key}", _("Attribute “%(key)s”") % {"key": key})])
        )
    return choices


class MappingForm(forms.Form):
    """One select per file column (pre-filled from the check) plus attribute types."""

    segment_name = UploadForm.base_fields["segment_name"]
    skip_invalid = UploadForm.base_fields["skip_invalid"]

    def __init__(self, *args: Any, job: ImportJob, summary: ImportSummary, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job
        self.columns = summary.columns
        topics = [(t.slug, t.name) for t in Topic.objects.order_by("sort_order", "slug")]
        self.initial.setdefault("segment_name", job.segment_name)
        self.initial.setdefault("skip_invalid", job.skip_invalid)
        self.rows: list[tuple[dict[str, str], forms.BoundField, forms.BoundField | None]] = []
        for index, column in enumerate(self.columns):
            name = f"column_{index}"
            self.fields[name] = forms.ChoiceField(
                label=column["header"] or _("(blank header)"),
                choices=_target_choices(topics, column["header"]),
                initial=column["target"],
                widget=UnfoldAdminSelectWidget,
            )
            type_field = None
            if column["target"].startswith("attribute:"):
                type_name = f"type_{index}"
                self.fields[type_name] = forms.ChoiceField(
                    label=_("Type"),
                    required=False,  # left out: declared or inferred
                    choices=[(t, t) for t in ATTRIBUTE_TYPES],
                    initial=column.get("type") or "text",
                    widget=UnfoldAdminSelectWidget,
                )
                type_field = self[type_name]
            self.rows.append((column, self[name], type_field))

    def mapping(self) -> tuple[dict[str, str], dict[str, str]]:
        columns: dict[str, str] = {}
        types: dict[str, str] = {}
        for index, column in enumerate(self.columns):
            target = self.cleaned_data[f"column_{index}"]
            columns[column["header"]] = target
            chosen = self.cleaned_data.get(f"type_{index}")
            if target.startswith("attribute:") and chosen:
                types[target.removeprefix("attribute:")] = chosen
        return columns, types


@admin.register(ImportJob)
class ImportJobAdmin(ModelAdmin):
    list_display = (
        "original_name",
        "status_badge",
        "total_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "error_count",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "created_at")
    list_select_related = ("created_by",)
    search_fields = ("original_name", "segment_name")
    show_full_result_count = False

    @display(description=_("Status"), label=STATUS_COLOURS)
    def status_badge(self, obj: ImportJob) -> str:
        return str(obj.get_status_display())

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Jobs change only through the import flow, never through a model form.
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/status.json", wrap(self.status_view), name="audiences_importjob_status"),
            path(
                "<int:job_id>/mapping/",
                wrap(require_POST(self.mapping_view)),
                name="audiences_importjob_mapping",
            ),
            path(
                "<int:job_id>/confirm/",
                wrap(require_POST(self.confirm_view)),
                name="audiences_importjob_confirm",
            ),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, **extra}

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = import_job_create(
                    upload=form.cleaned_data["file"],
                    created_by=request.user if request.user.is_authenticated else None,
                    skip_invalid=form.cleaned_data["skip_invalid"],
                    segment_name=form.cleaned_data["segment_name"],
                )
            except ImportFileError as exc:
                form.add_error("file", exc.message)
            else:
                self._check(job)
                return HttpResponseRedirect(self._job_url(job))
        context = self._context(request, title=_("Import subscribers"), form=form)
        return TemplateResponse(request, "admin/audiences/importjob/upload.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            # The job page only shows; mapping and confirming have their own POST views.
            if not self.has_change_permission(request, job):
                raise PermissionDenied
            return HttpResponseNotAllowed(["GET", "HEAD"])
        summary = ImportSummary.from_json(job.preview) if job.preview else None
        form = None
        if (
            job.status in (ImportJob.Status.PREVIEWED, ImportJob.Status.FAILED)
            and summary
            and summary.columns
        ):
            form = MappingForm(job=job, summary=summary)
        running = job.status in (
            ImportJob.Status.UPLOADED,
            ImportJob.Status.PREVIEWING,
            ImportJob.Status.IMPORTING,
        )
        context = self._context(
            request,
            title=job.original_name,
            job=job,
            summary=summary,
            form=form,
            running=running,
            format_label=self._format_label(job),
            progress=import_job_progress(job=job),
            can_add=self.has_add_permission(request),
            can_confirm=job.status == ImportJob.Status.PREVIEWED
            and (not job.error_count or job.skip_invalid),
            status_url=reverse("admin:audiences_importjob_status", args=[job.pk]),
            mapping_url=reverse("admin:audiences_importjob_mapping", args=[job.pk]),
            confirm_url=reverse("admin:audiences_importjob_confirm", args=[job.pk]),
            subscribers_url=reverse("admin:audiences_subscriber_changelist"),
        )
        return TemplateResponse(request, "admin/audiences/importjob/detail.html", context)

    def status_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return JsonResponse(import_job_progress(job=job))

    def mapping_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        summary = ImportSummary.from_json(job.preview or {"file_name": job.original_name})
        form = MappingForm(request.POST, job=job, summary=summary)
        if not form.is_valid():
            messages.error(request, _("Choose a field (or “ignore”) for every column."))
            return HttpResponseRedirect(self._job_url(job))
        columns, types = form.mapping()
        try:
            job = import_job_set_mapping(
                job=job,
                columns=columns,
                attribute_types=types,
                skip_invalid=form.cleaned_data["skip_invalid"],
                segment_name=form.cleaned_data["segment_name"],
            )
        except ImportJobError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(self._job_url(job))
        if not import_job_runs_in_background(job):
            import_job_preview(job_id=job.pk)
        return HttpResponseRedirect(self._job_url(job))

    def confirm_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            job = import_job_confirm(job=job)
        except ImportJobError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(self._job_url(job))
        if not import_job_runs_in_background(job):
            job = import_job_run(job_id=job.pk) or job
            if job.status == ImportJob.Status.COMPLETED:
                messages.success(
                    request,
                    _("Imported: %(created)s created, %(updated)s updated, %(unchanged)s unchanged.")
                    % {
                        "created": job.created_count,
                        "updated": job.updated_count,
                        "unchanged": job.unchanged_count,
                    },
                )
        return HttpResponseRedirect(self._job_url(job))

    def _check(self, job: ImportJob) -> None:
        """Check small files now; queue big ones (the request never waits for them)."""
        if import_job_runs_in_background(job):
            import_job_enqueue_preview(job=job)
        else:
            import_job_preview(job_id=job.pk)

    def _job_url(self, job: ImportJob) -> str:
        return reverse("admin:audiences_importjob_change", args=[job.pk])

    @staticmethod
    def _format_label(job: ImportJob) -> str:
        if not job.encoding:
            return ""
        encoding = ENCODING_LABELS.get(job.encoding, job.encoding)
        return f"{encoding}, {DELIMITER_NAMES.get(job.delimiter, job.delimiter)}-separated"
