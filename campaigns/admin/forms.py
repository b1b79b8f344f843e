"""Forms of the campaign admin: the campaign itself and one variant (all its languages).

Both refuse early what launching would refuse later, with the error on the field to
fix: a schedule that cannot run, a template that does not render (on ``title_de``,
not somewhere on the page).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.db import models
from django.utils.translation import gettext as _
from unfold.widgets import UnfoldAdminTextareaWidget

from audiences.models import AttributeDefinition
from campaigns.models import Campaign, Variant
from campaigns.services import ScheduleError, campaign_schedule_check

LANGUAGE_NAMES = dict(settings.LANGUAGES)
MAX_WEB_ACTIONS = 2


def language_suffix(code: str) -> str:
    """The column suffix modeltranslation uses for a language: ``pt-br`` → ``pt_br``."""
    return code.replace("-", "_")


class CampaignForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Campaign
        # All a marketer sets; which of them are on the page (and editable) is the
        # admin's decision (fieldsets, read-only fields by status).
        fields = (
            "name",
            "description",
            "topic",
            "include_segments",
            "exclude_segments",
            "kind",
            "default_language",
            "schedule_type",
            "send_at",
            "local_date",
            "local_time",
            "late_policy",
            "fallback_timezone",
            "schedule_timezone",
            "weekdays",
            "cron_expression",
            "ends_at",
            "ab_mode",
            "control_percent",
            "ab_test_percent",
            "ab_window_hours",
            "ab_metric",
            "throttle_per_minute",
            "ttl_seconds",
            "priority",
            "quiet_hours_policy",
            "quiet_hours_start",
            "quiet_hours_end",
            "cap_policy",
            "conversion_event",
            "conversion_window_hours",
        )
        widgets = {"description": UnfoldAdminTextareaWidget(attrs={"rows": 2})}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("quiet_hours_start")) != bool(data.get("quiet_hours_end")):
            self.add_error(
                "quiet_hours_end" if data.get("quiet_hours_start") else "quiet_hours_start",
                _("Give both the start and the end of the quiet hours, or neither (app default)."),
            )
        kind = data.get("schedule_type")
        # The model's check constraints say the same, in words nobody can act on.
        if kind == Campaign.ScheduleType.AT and "send_at" in self.fields and not data.get("send_at"):
            self.add_error("send_at", _("Choose the date and time to send at."))
        if kind == Campaign.ScheduleType.LOCAL_TIME:
            for name in ("local_date", "local_time"):
                if name in self.fields and not data.get(name):
                    self.add_error(name, _("A local-time campaign needs a date and a time of day."))
        recurring_at = {Campaign.ScheduleType.DAILY, Campaign.ScheduleType.WEEKLY}
        if kind in recurring_at and "local_time" in self.fields and not data.get("local_time"):
            self.add_error("local_time", _("Choose the time of day a recurring campaign sends at."))
        cron = (data.get("cron_expression") or "").strip()
        if kind == Campaign.ScheduleType.CRON and "cron_expression" in self.fields and not cron:
            self.add_error("cron_expression", _("Write the cron expression, e.g. “0 9 * * 1-5”."))
        return data

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        # A scheduled or paused campaign's beat task follows its schedule on save
        # (campaign_save): refuse a schedule that cannot run here, on the form,
        # rather than as an error after the save.
        campaign = self.instance
        if self.errors or campaign.pk is None:
            return
        if campaign.status not in {Campaign.Status.SCHEDULED, Campaign.Status.PAUSED}:
            return
        try:
            campaign_schedule_check(campaign=campaign)
        except ScheduleError as exc:
            self.add_error(None, exc.message)
        except ValueError as exc:  # an unknown time zone
            self.add_error(None, _("The schedule is not valid: %(error)s.") % {"error": exc})


def _https_urls(field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """Addresses typed without a scheme are https (Django 6's default, without the warning)."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class VariantInlineForm(forms.ModelForm):  # type: ignore[type-arg]
    """One variant in every language, checked language by language.

    modeltranslation makes the default language's title and body required; a
    campaign may be written in another default language, so instead each language
    that has any text needs both, and at least one language must be written. Every
    written language goes through ``campaigns.rendering.validate_variant`` — the
    same check launching runs — and each error lands on its own field
    (``title_de``, ``body_ar``, ``click_url``, ``data``).
    """

    class Meta:
        model = Variant
        # modeltranslation swaps title and body for their per-language columns.
        fields = (
            "name",
            "weight",
            "title",
            "body",
            "image_url",
            "click_action",
            "click_url",
            "data",
            "android_channel_id",
            "android_icon",
            "ios_sound",
            "ios_badge",
            "web_icon",
            "web_actions",
        )
        # modeltranslation copies the "body" widget to body_en, body_de, …
        widgets = {"body": UnfoldAdminTextareaWidget(attrs={"rows": 3})}
        formfield_callback = _https_urls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for code in LANGUAGE_NAMES:
            for name in (f"title_{language_suffix(code)}", f"body_{language_suffix(code)}"):
                if name in self.fields:
                    self.fields[name].required = False

    def written_languages(self) -> list[str]:
        data = self.cleaned_data
        return [
            code
            for code in LANGUAGE_NAMES
            if (data.get(f"title_{language_suffix(code)}") or "").strip()
            or (data.get(f"body_{language_suffix(code)}") or "").strip()
        ]

    def clean_web_actions(self) -> Any:
        actions = self.cleaned_data.get("web_actions")
        if actions in (None, ""):
            return []
        valid = isinstance(actions, list) and all(
            isinstance(a, dict) and str(a.get("action", "")).strip() and str(a.get("title", "")).strip()
            for a in actions
        )
        if not valid:
            raise forms.ValidationError(
                _('A list of buttons, each with an action and a title: [{"action": "buy", "title": "Buy"}].')
            )
        if len(actions) > MAX_WEB_ACTIONS:
            raise forms.ValidationError(_("Browsers show at most two buttons; remove the others."))
        return actions

    def clean_data(self) -> Any:
        data = self.cleaned_data.get("data")
        if data in (None, ""):
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError(_('Key/value pairs: {"screen": "offers", "coupon": "SPRING"}.'))
        if not all(isinstance(key, str) and isinstance(value, str) for key, value in data.items()):
            # FCM data messages carry text only.
            raise forms.ValidationError(_('Every value must be text, in quotes: {"count": "5"}, not 5.'))
        return data

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "title_en" not in self.fields:  # read-only inline (campaign under review, running…)
            return data
        action = data.get("click_action")
        click_url = (data.get("click_url") or "").strip()
        if action in {Variant.ClickAction.URL, Variant.ClickAction.DEEP_LINK} and not click_url:
            self.add_error("click_url", _("Write the address or deep link to open."))
        written = self.written_languages()
        if not written:
            self.add_error(None, _("Write the title and body in at least one language."))
            return data
        # Imported here: rendering is pure logic with its own template-engine set-up
        # (as in campaigns.services.lifecycle).
        from campaigns.rendering import validate_variant

        known_attributes = set(AttributeDefinition.objects.values_list("key", flat=True))
        payload = data.get("data") or {}
        reported: set[tuple[str | None, str]] = set()
        for code in written:
            suffix = language_suffix(code)
            title = data.get(f"title_{suffix}") or ""
            body = data.get(f"body_{suffix}") or ""
            blank = set()
            for name, text in ((f"title_{suffix}", title), (f"body_{suffix}", body)):
                if not text.strip():
                    blank.add(name)
                    self.add_error(
                        name,
                        _("Write the %(language)s title and body, or clear both.")
                        % {"language": LANGUAGE_NAMES[code]},
                    )
            errors = validate_variant(
                title=title,
                body=body,
                click_url=click_url,
                data=payload,
                known_attributes=known_attributes,
            )
            for error in errors:
                field = self._field_for(error.field, suffix)
                if field in blank:  # already said, in words naming the language
                    continue
                message = error.message
                if field is None:
                    message = f"{LANGUAGE_NAMES[code]}: {message}"
                if (field, message) in reported:  # click_url/data errors repeat per language
                    continue
                reported.add((field, message))
                self.add_error(field, message)
        return data

    def _field_for(self, error_field: str, suffix: str) -> str | None:
        if error_field in {"title", "body"}:
            return f"{error_field}_{suffix}"
        if error_field == "click_url":
            return "click_url"
        if error_field.startswith("data"):
            return "data"
        return None  # the whole message ("payload": too large for FCM)
