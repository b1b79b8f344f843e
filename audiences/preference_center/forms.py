"""The preference center's forms: the choices form and the pause form.

Rendered by hand in ``templates/preferences/page.html`` (fieldsets, legends, hints
and errors tied to their inputs); the forms validate and translate the posted values
into the arguments of the preference-center services.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from audiences.languages import normalize_language, supported_languages
from audiences.models import Subscriber, Topic
from audiences.preference_center.pickers import is_timezone, language_choices


class PreferencesForm(forms.Form):
    """Everything the user chooses at once: push, topics, frequency, quiet hours, zone, language."""

    push_opt_in = forms.BooleanField(required=False, label=_("Send me push notifications"))
    topics = forms.MultipleChoiceField(
        required=False,
        label=_("Topics"),
        error_messages={"invalid_choice": _("One of the topics you chose is no longer offered.")},
    )
    frequency_limit = forms.ChoiceField(
        choices=Subscriber.FrequencyLimit.choices,
        label=_("How often"),
        error_messages={
            "required": _("Choose how often you want to hear from us."),
            "invalid_choice": _("Choose how often you want to hear from us."),
        },
    )
    quiet_start = forms.TimeField(
        required=False,
        label=_("Quiet from"),
        input_formats=["%H:%M", "%H:%M:%S"],
        error_messages={"invalid": _("Enter a time like 22:00.")},
    )
    quiet_end = forms.TimeField(
        required=False,
        label=_("Quiet until"),
        input_formats=["%H:%M", "%H:%M:%S"],
        error_messages={"invalid": _("Enter a time like 07:00.")},
    )
    timezone = forms.CharField(
        max_length=64,
        label=_("Your time zone"),
        error_messages={"required": _("Choose your time zone.")},
    )
    language = forms.ChoiceField(
        choices=language_choices,
        label=_("Language of your notifications and of this page"),
        error_messages={
            "required": _("Choose a language."),
            "invalid_choice": _("Choose one of the languages in the list."),
        },
    )

    def __init__(self, *args: Any, topics: list[Topic], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topic_list = topics
        topic_field: forms.MultipleChoiceField = self.fields["topics"]  # type: ignore[assignment]
        topic_field.choices = [(topic.slug, topic.slug) for topic in topics]

    @classmethod
    def initial_for(
        cls, *, subscriber: Subscriber, topics: dict[Topic, bool], language: str
    ) -> dict[str, Any]:
        """The form's values for what is stored now; ``language`` is the page's language."""
        return {
            "push_opt_in": subscriber.push_opt_in,
            "topics": [topic.slug for topic, opted_in in topics.items() if opted_in],
            "frequency_limit": subscriber.frequency_limit,
            "quiet_start": _hhmm(subscriber.quiet_hours_start),
            "quiet_end": _hhmm(subscriber.quiet_hours_end),
            "timezone": subscriber.timezone,
            "language": language,
        }

    def clean_timezone(self) -> str:
        value: str = self.cleaned_data["timezone"].strip()
        if not is_timezone(value):
            raise forms.ValidationError(
                _("Choose a time zone from the list, for example Europe/Berlin."), code="invalid_timezone"
            )
        return value

    def clean_language(self) -> str:
        code = normalize_language(self.cleaned_data["language"])
        if code not in supported_languages():  # pragma: no cover — the choices already say so
            raise forms.ValidationError(_("Choose one of the languages in the list."), code="invalid_choice")
        return code

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("quiet_start"), cleaned.get("quiet_end")
        if "quiet_start" in self.errors or "quiet_end" in self.errors:
            return cleaned
        if start is None and end is not None:
            self.add_error("quiet_start", _("Enter when quiet hours start, or clear both times."))
        elif end is None and start is not None:
            self.add_error("quiet_end", _("Enter when quiet hours end, or clear both times."))
        elif start is not None and start == end:
            self.add_error("quiet_end", _("Quiet hours must end at a different time than they start."))
        return cleaned

    def quiet_hours(self) -> tuple[dt.time, dt.time] | None:
        start, end = self.cleaned_data["quiet_start"], self.cleaned_data["quiet_end"]
        return (start, end) if start is not None and end is not None else None

    def topic_choices(self) -> dict[Topic, bool]:
        chosen = set(self.cleaned_data["topics"])
        return {topic: topic.slug in chosen for topic in self.topic_list}


class PauseForm(forms.Form):
    """Pause everything for a week or a month, or resume now."""

    PERIODS = {"week": dt.timedelta(days=7), "month": dt.timedelta(days=30)}

    period = forms.ChoiceField(choices=[("week", "week"), ("month", "month"), ("resume", "resume")])

    def paused_until(self, *, now: dt.datetime) -> dt.datetime | None:
        period = self.cleaned_data["period"]
        return None if period == "resume" else now + self.PERIODS[period]


def _hhmm(value: dt.time | None) -> str:
    return value.strftime("%H:%M") if value is not None else ""
