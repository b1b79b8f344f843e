"""Admin for segments: the visual rule builder, the live estimate endpoint, static lists.

The builder (static/notifyhub/segments/builder.js) edits the rule tree held in a
hidden input, so a marketer never types JSON. Each change posts the tree to
``estimate/`` (staff only), which validates it and answers with the exact size, the
reachable size and a sample, or with the problems per condition.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from audiences.models import Segment
from audiences.segments import SegmentRulesError, builder_catalog, empty_rules, validate_rules
from audiences.segments.loading import rule_context_load
from audiences.selectors import (
    segment_estimate,
    segment_member_external_ids,
    subscribers_unknown_external_ids,
)
from audiences.services import (
    SegmentError,
    parse_external_ids,
    segment_add_members_by_external_id,
    segment_create_static,
    segment_refresh_count,
    segment_save,
    segment_validate_rules,
)

MAX_ESTIMATE_BODY = 200_000
SAMPLE_SIZE = 8


class RuleBuilderWidget(forms.Widget):
    """A hidden input with the rule tree as JSON, and the builder that edits it."""

    def __init__(self, *, catalog: dict[str, Any], estimate_url: str, topics: list[tuple[int, str]]) -> None:
        super().__init__()
        self.catalog, self.estimate_url, self.topics = catalog, estimate_url, topics

    def format_value(self, value: Any) -> str:
        if value in (None, "", {}):
            return json.dumps(empty_rules())
        return value if isinstance(value, str) else json.dumps(value)

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        input_id = (attrs or {}).get("id", f"id_{name}")
        return SafeString(
            render_to_string(
                "admin/audiences/segment/rule_builder.html",
                {
                    "name": name,
                    "input_id": input_id,
                    "value": self.format_value(value),
                    "catalog": self.catalog,
                    "estimate_url": self.estimate_url,
                    "topics": self.topics,
                },
            )
        )


class SegmentForm(forms.ModelForm):  # type: ignore[type-arg]
    rules = forms.JSONField(required=False, label=_("Rules"))
    paste_external_ids = forms.CharField(
        label=_("Add members"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "customer-1001\ncustomer-1002"}),
        help_text=_("Static lists only: paste external ids, one per line (or separated by commas)."),
    )

    class Meta:
        model = Segment
        fields = ("name", "description", "kind", "rules")

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        taken = Segment.objects.filter(name__iexact=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(_("A segment with this name already exists; choose another name."))
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind") or self.instance.kind
        if kind == Segment.Kind.DYNAMIC:
            instance = self.instance if self.instance.pk else None
            validated = segment_validate_rules(rules=data.get("rules") or {}, segment=instance)
            if validated.ok:
                data["rules"] = validated.rules
            else:
                self.add_error("rules", [str(problem) for problem in validated.problems])
        else:
            data["rules"] = {}
            ids = parse_external_ids(data.get("paste_external_ids") or "")
            unknown = subscribers_unknown_external_ids(external_ids=ids) if ids else []
            if unknown:
                shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
                self.add_error(
                    "paste_external_ids",
                    _(
                        "%(n)d of these ids match no subscriber: %(ids)s. "
                        "Fix or remove them; nothing was added."
                    )
                    % {"n": len(unknown), "ids": shown},
                )
            data["external_ids"] = ids
        return data


@admin.register(Segment)
class SegmentAdmin(ModelAdmin):
    form = SegmentForm
    list_display = ("name", "kind_badge", "size", "reachable", "counted_at", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "description")
    readonly_fields = ("members_overview", "last_count", "last_reachable", "counted_at")
    actions = ["recount"]

    class Media:
        css = {"all": ("notifyhub/segments/builder.css",)}
        js = ("notifyhub/segments/builder.js",)

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        if obj is not None and obj.kind == Segment.Kind.STATIC:
            return (
                (None, {"fields": ("name", "description")}),
                (_("Members"), {"fields": ("members_overview", "paste_external_ids")}),
            )
        if obj is not None:
            return ((None, {"fields": ("name", "description")}), (_("Who is in it"), {"fields": ("rules",)}))
        return (
            (None, {"fields": ("name", "description", "kind")}),
            (_("Who is in it"), {"fields": ("rules", "paste_external_ids")}),
        )

    def get_form(
        self, request: HttpRequest, obj: Segment | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if "rules" in form.base_fields:
            context = rule_context_load(segment_id=obj.pk if obj else None, for_builder=True)
            form.base_fields["rules"].widget = RuleBuilderWidget(
                catalog=builder_catalog(context),
                estimate_url=reverse("admin:audiences_segment_estimate"),
                topics=sorted(context.topics.items(), key=lambda item: item[1]),
            )
        return form

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except SegmentError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        user = request.user if request.user.is_authenticated else None
        try:
            if obj.kind == Segment.Kind.STATIC:
                if change:
                    obj.save(update_fields=["name", "description", "updated_at"])
                    saved = obj
                else:
                    saved = segment_create_static(
                        name=obj.name,
                        description=obj.description,
                        subscribers=[],
                        created_by=user,  # type: ignore[arg-type]
                    )
                if data.get("external_ids"):
                    count = segment_add_members_by_external_id(
                        segment=saved, external_ids=data["external_ids"]
                    )
                    messages.success(request, _("The list now has %(n)d members.") % {"n": count})
            else:
                saved = segment_save(
                    segment=obj if change else None,
                    name=obj.name,
                    description=obj.description,
                    rules=data.get("rules"),
                    created_by=user,  # type: ignore[arg-type]
                )
        except SegmentError:
            # The form validated the same things, so this is a concurrent edit (say,
            # another segment now includes this one): roll back the admin's
            # transaction; changeform_view turns it into a message.
            raise
        obj.pk, obj._state.adding = saved.pk, False
        segment_refresh_count(segment=saved)

    # -- list ------------------------------------------------------------------

    @display(description=_("Kind"), label={_("Rules"): "info", _("Static list"): "success"})
    def kind_badge(self, obj: Segment) -> str:
        return str(obj.get_kind_display())

    @display(description=_("Size"), ordering="last_count")
    def size(self, obj: Segment) -> str:
        return "—" if obj.last_count is None else f"{obj.last_count:,}"

    @display(description=_("Reachable"), ordering="last_reachable")
    def reachable(self, obj: Segment) -> str:
        return "—" if obj.last_reachable is None else f"{obj.last_reachable:,}"

    @display(description=_("Members"))
    def members_overview(self, obj: Segment) -> str:
        if obj.pk is None or obj.kind != Segment.Kind.STATIC:
            return "—"
        total = obj.members.count()
        ids = segment_member_external_ids(segment=obj, limit=50)
        listing = format_html_join(", ", "<code>{}</code>", ((value,) for value in ids))
        more = _(" and %(n)d more") % {"n": total - len(ids)} if total > len(ids) else ""
        return format_html(
            '<div id="segment-members"><strong>{}</strong> {}<br>{}{}</div>',
            total,
            _("members"),
            listing,
            more,
        )

    @action(description=_("Recount the selected segments"))
    def recount(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        failed = []
        for segment in queryset:  # a handful of segments, one counting query each
            try:
                segment_refresh_count(segment=segment)
            except SegmentRulesError as exc:
                failed.append(f"{segment.name}: {exc.message}")
        for message in failed:
            messages.error(request, message)
        if len(failed) < queryset.count():
            messages.success(request, _("Segment sizes are up to date."))

    # -- the live estimate -------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        estimate = path(
            "estimate/",
            self.admin_site.admin_view(require_POST(self.estimate_view)),
            name="audiences_segment_estimate",
        )
        return [estimate, *super().get_urls()]

    def estimate_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``{"rules": …, "topic": id|null, "segment": id|null}`` → sizes and a sample, or problems."""
        if not (self.has_view_permission(request) or self.has_add_permission(request)):
            return JsonResponse({"ok": False, "message": str(_("You may not view segments."))}, status=403)
        if len(request.body) > MAX_ESTIMATE_BODY:
            return JsonResponse({"ok": False, "message": str(_("These rules are too large."))}, status=413)
        try:
            payload = json.loads(request.body or b"{}")
            topic_id = int(payload["topic"]) if payload.get("topic") not in (None, "") else None
            segment_id = int(payload["segment"]) if payload.get("segment") not in (None, "") else None
        except (ValueError, TypeError, KeyError, AttributeError):
            return JsonResponse(
                {"ok": False, "message": str(_("The request is not valid JSON."))}, status=400
            )
        context = rule_context_load(segment_id=segment_id)
        validated = validate_rules(payload.get("rules"), context=context)
        if topic_id is not None and topic_id not in context.topics:
            return JsonResponse({"ok": False, "message": str(_("That topic no longer exists."))}, status=400)
        if not validated.ok:
            problems = [{"path": p.path, "where": p.where, "message": p.message} for p in validated.problems]
            return JsonResponse({"ok": False, "problems": problems}, status=400)
        try:
            estimate = segment_estimate(
                rules=validated.rules, topic_id=topic_id, sample_size=SAMPLE_SIZE, context=context
            )
        except SegmentRulesError as exc:
            return JsonResponse(
                {"ok": False, "problems": [{"path": "", "where": "", "message": exc.message}]}, status=400
            )
        sample = [
            {
                "external_id": s.external_id,
                "name": f"{s.first_name} {s.last_name}".strip(),
                "country": s.country,
                "url": reverse("admin:audiences_subscriber_change", args=[s.pk]),
            }
            for s in estimate.sample
        ]
        return JsonResponse(
            {"ok": True, "total": estimate.total, "reachable": estimate.reachable, "sample": sample}
        )
