"""The preference center's views: ``/preferences/<signed token>/`` and its actions.

Every view that takes a token passes the same gate: a blocked address gets 429; a
token that does not resolve to a live subscriber gets the generic invalid-link page
(one status and template for tampered, truncated, expired, unknown and erased) and
counts against the address; nothing is written in either case.

GET and HEAD only read. Changes are POSTs (CSRF-protected) followed by a redirect
(303) back to the page, where a message confirms what happened (Post/Redirect/Get).

Language: ``?lang=<code>`` re-renders the page in another offered language without
saving anything; otherwise the page follows the subscriber's language. Saving the
preferences form stores the language chosen there (which starts as the page's).

The page itself is the hot path (every push message links to it): its GET is one
query (``selectors.page_state``) and a template compiled for the page's language
(``rendering``); its POST reads that state again with the row locked, in the
transaction that saves, so the whole save is that read plus the writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from audiences import preference_links
from audiences.languages import normalize_language, supported_languages
from audiences.models import ConsentRecord, Subscriber
from audiences.preference_center import rendering, selectors, services, throttle
from audiences.preference_center.forms import PauseForm, PreferencesForm
from audiences.preference_center.pickers import language_options, timezone_options
from audiences.preference_center.security import strict_headers
from audiences.services.preferences import ConsentContext

SubscriberView = Callable[[HttpRequest, Subscriber, str], HttpResponse]

# The actions' paths below the page's own (``urls.py`` mounts them there).
UNSUBSCRIBE_PATH = "unsubscribe/"
PAUSE_PATH = "pause/"
EXPORT_PATH = "export/"
ERASE_PATH = "erase/"


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: "the result is over there, GET it" — the redirect of Post/Redirect/Get."""

    status_code = 303


# --- language and rendering ------------------------------------------------------------


def _requested_language(request: HttpRequest) -> str | None:
    code = normalize_language(request.GET.get("lang", ""))
    return code if code in supported_languages() else None


def _page_language(request: HttpRequest, subscriber_language: str | None = None) -> str:
    """``?lang=`` if offered, else the subscriber's language, else the browser's (LocaleMiddleware)."""
    requested = _requested_language(request)
    if requested:
        return requested
    if subscriber_language in supported_languages():
        return subscriber_language  # type: ignore[return-value]
    return translation.get_language() or settings.LANGUAGE_CODE


def _lang_query(request: HttpRequest) -> str:
    requested = _requested_language(request)
    return "?" + urlencode({"lang": requested}) if requested else ""


def _page_url(token: str, query: str = "") -> str:
    return reverse("preferences:page", kwargs={"token": token}) + query


def _confirm(request: HttpRequest, language: str, message: Callable[[], str]) -> None:
    """Queue the confirmation for the next page, already translated into ``language``."""
    with translation.override(language):
        messages.success(request, message())


def _consent_context(request: HttpRequest, detail: str = "") -> ConsentContext:
    return ConsentContext(
        source=ConsentRecord.Source.PREFERENCE_CENTER,
        source_detail=detail,
        ip_address=request.META.get("REMOTE_ADDR", ""),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )


# --- the token gate ------------------------------------------------------------------------


def _invalid_link(request: HttpRequest) -> HttpResponse:
    # One page for every reason, so it reveals nothing about the link or the subscriber.
    return rendering.render("invalid.html", {}, language=_page_language(request), status=400)


def _too_many(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = rendering.render("too_many.html", {}, language=_page_language(request), status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _bad_link(request: HttpRequest) -> HttpResponse:
    retry_after = throttle.record_bad_token(throttle.client_address(request))
    return _invalid_link(request) if retry_after is None else _too_many(request, retry_after)


def _blocked(request: HttpRequest) -> HttpResponse | None:
    """The 429 page if the client's address is blocked for too many bad links."""
    retry_after = throttle.blocked_for(throttle.client_address(request))
    return None if retry_after is None else _too_many(request, retry_after)


def _subscriber_id(token: str) -> int | None:
    try:
        return preference_links.verify_token(token=token)
    except preference_links.PreferenceLinkError:
        return None


def _live_subscriber(token: str) -> Subscriber | None:
    subscriber_id = _subscriber_id(token)
    if subscriber_id is None:
        return None
    return Subscriber.objects.filter(pk=subscriber_id, erased_at__isnull=True).first()


def with_subscriber(view: SubscriberView) -> Callable[..., HttpResponse]:
    """Resolve ``token`` to a live subscriber, or answer 429 / the invalid-link page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, token: str) -> HttpResponse:
        blocked = _blocked(request)
        if blocked is not None:
            return blocked
        subscriber = _live_subscriber(token)
        if subscriber is None:
            return _bad_link(request)
        try:
            return view(request, subscriber, token)
        except services.SubscriberGone:  # erased while the page was open
            return _invalid_link(request)

    return wrapper


# --- the page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Choices:
    """The values the choices form shows: the stored ones, or the ones just posted."""

    push_on: bool
    topics: frozenset[str]
    frequency: str
    quiet_start: str
    quiet_end: str
    timezone: str
    language: str

    @classmethod
    def stored(cls, state: selectors.PageState, language: str) -> _Choices:
        # The language starts as the page's, so saving the form keeps what is shown.
        return cls(
            push_on=state.push_opt_in,
            topics=frozenset(choice.topic.slug for choice in state.topics if choice.opted_in),
            frequency=state.frequency_limit,
            quiet_start=_hhmm(state.quiet_hours_start),
            quiet_end=_hhmm(state.quiet_hours_end),
            timezone=state.timezone,
            language=language,
        )

    @classmethod
    def posted(cls, form: PreferencesForm) -> _Choices:
        return cls(
            push_on=bool(form["push_opt_in"].value()),
            topics=frozenset(form["topics"].value() or ()),
            frequency=str(form["frequency_limit"].value() or ""),
            quiet_start=str(form["quiet_start"].value() or ""),
            quiet_end=str(form["quiet_end"].value() or ""),
            timezone=str(form["timezone"].value() or ""),
            language=str(form["language"].value() or ""),
        )


def _hhmm(value: dt.time | None) -> str:
    return value.strftime("%H:%M") if value is not None else ""


@functools.lru_cache(maxsize=32)
def _labels(language: str) -> dict[str, str]:
    """The choices form's field labels, translated (the template and the error summary use them)."""
    with translation.override(language):
        return {name: str(field.label) for name, field in PreferencesForm.base_fields.items()}


@functools.lru_cache(maxsize=32)
def _frequency_options(language: str) -> tuple[tuple[str, str], ...]:
    with translation.override(language):
        return tuple((value, str(label)) for value, label in Subscriber.FrequencyLimit.choices)


def _local(value: dt.datetime, zone: str) -> dt.datetime:
    try:
        return timezone.localtime(value, zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return timezone.localtime(value, dt.UTC)


def _fields_context(
    language: str, choices: _Choices, catalog: selectors.TopicCatalog, field_errors: dict[str, Any]
) -> dict[str, Any]:
    """What ``_fields.html`` shows: the choices form's fields with ``choices`` filled in."""
    return {
        "labels": _labels(language),
        "field_errors": field_errors,
        "push_on": choices.push_on,
        "topic_rows": [
            {
                "slug": topic.slug,
                "id": f"id_topic_{topic.slug}",
                "name": name,
                "description": description,
                "checked": topic.slug in choices.topics,
            }
            for topic, (name, description) in zip(catalog.topics, catalog.labels(language), strict=True)
        ],
        "frequency_rows": [
            {
                "value": value,
                "label": label,
                "checked": value == choices.frequency,
                "id": f"id_frequency_{value}",
            }
            for value, label in _frequency_options(language)
        ],
        "quiet_start": choices.quiet_start,
        "quiet_end": choices.quiet_end,
        "timezone_options": timezone_options(selected=choices.timezone, language=language),
        "language_options": language_options(selected=choices.language),
    }


# Every field present: a template's lookup of a missing key raises (and catches)
# VariableDoesNotExist, the slowest thing a template does.
_NO_ERRORS: dict[str, Any] = dict.fromkeys(PreferencesForm.base_fields, ())


@functools.lru_cache(maxsize=256)
def _fields_html(language: str, choices: _Choices, catalog: selectors.TopicCatalog) -> str:
    """The fields without errors, kept per (language, values, topics): most people share them.

    ``catalog`` is memoized by the topics' stored values, so an edited topic makes a
    new key (the old entries just age out).
    """
    return rendering.render_to_string(
        "_fields.html", _fields_context(language, choices, catalog, _NO_ERRORS), language=language
    )


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in rendering.COMPILED_FROM:  # tests: the memoized HTML may be stale
        for memo in (_fields_html, _labels, _frequency_options):
            memo.cache_clear()


class _Deferred:
    """HTML rendered when the template outputs it, so page.html is rendered first
    (and is the template the test client reports for the page)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    def __str__(self) -> str:
        return mark_safe(self._render())  # noqa: S308 — the output of an autoescaped template

    def __html__(self) -> str:
        return str(self)


def _render_page(
    request: HttpRequest,
    token: str,
    state: selectors.PageState,
    language: str,
    choices: _Choices,
    *,
    form: PreferencesForm | None = None,
    status: int = 200,
) -> HttpResponse:
    labels = _labels(language)
    with translation.override(language):  # iterating an ErrorList translates its messages
        errors = [
            (f"id_{name}", labels[name], error) if name in labels else ("", "", error)
            for name, messages_ in (form.errors.items() if form is not None else ())
            for error in messages_
        ]
    if errors:
        assert form is not None
        fields_context = _fields_context(language, choices, state.catalog, _NO_ERRORS | dict(form.errors))
        fields = _Deferred(
            functools.partial(rendering.render_to_string, "_fields.html", fields_context, language=language)
        )
    else:
        fields = _Deferred(functools.partial(_fields_html, language, choices, state.catalog))
    paused_until = None
    if state.is_paused:
        assert state.paused_until is not None
        with translation.override(language):
            paused_until = formats.date_format(_local(state.paused_until, state.timezone), "DATETIME_FORMAT")
    page_path = _page_url(token)
    query = _lang_query(request)
    context: dict[str, Any] = {
        "csrf_token": get_token(request),
        "messages": [str(message) for message in messages.get_messages(request)],
        "errors": errors,
        # Rendered while page.html renders (lazily), so page.html is the page's template.
        "fields": fields,
        "stored_push_on": state.push_opt_in,
        "paused_until": paused_until,
        "switch_options": language_options(selected=language),
        "page_url": page_path + query,
        "bare_page_url": page_path,
        "unsubscribe_url": page_path + UNSUBSCRIBE_PATH + query,
        "pause_url": page_path + PAUSE_PATH + query,
        "export_url": page_path + EXPORT_PATH + query,
        "erase_url": page_path + ERASE_PATH + query,
    }
    return rendering.render("page.html", context, language=language, status=status)


@strict_headers
@require_http_methods(["GET", "HEAD", "POST"])
@csrf_protect
def page(request: HttpRequest, token: str) -> HttpResponse:
    """Show the choices (GET); save the choices form (POST, then 303 back here)."""
    blocked = _blocked(request)
    if blocked is not None:
        return blocked
    subscriber_id = _subscriber_id(token)
    if request.method == "POST":
        return _save(request, token, subscriber_id)
    state = selectors.page_state(subscriber_id=subscriber_id) if subscriber_id is not None else None
    if state is None:
        return _bad_link(request)
    language = _page_language(request, state.language)
    return _render_page(request, token, state, language, _Choices.stored(state, language))


def _save(request: HttpRequest, token: str, subscriber_id: int | None) -> HttpResponse:
    """The choices form's POST: validate and save in one transaction, under the row lock."""
    if subscriber_id is None:
        return _bad_link(request)
    with transaction.atomic():
        state = selectors.page_state(subscriber_id=subscriber_id, lock=True)
        if state is None:
            saved = None
        else:
            language = _page_language(request, state.language)
            form = PreferencesForm(request.POST, topics=[choice.topic for choice in state.topics])
            with translation.override(language):  # errors in the page's language
                valid = form.is_valid()
            saved = (
                services.preference_center_save(
                    locked=state,
                    context=_consent_context(request),
                    push_opt_in=form.cleaned_data["push_opt_in"],
                    topics=form.topic_choices(),
                    frequency_limit=form.cleaned_data["frequency_limit"],
                    quiet_hours=form.quiet_hours(),
                    timezone=form.cleaned_data["timezone"],
                    language=form.cleaned_data["language"],
                )
                if valid
                else None
            )
    if state is None:  # erased (or gone) since the link was made
        return _bad_link(request)
    if saved is None:
        return _render_page(request, token, state, language, _Choices.posted(form), form=form, status=400)
    # The page now follows the saved language, so the confirmation is in it too.
    _confirm(
        request,
        saved.language,
        lambda: (
            _("Your choices are saved.")
            if saved.changed
            else _("Nothing to change: your choices were already saved like this.")
        ),
    )
    return HttpResponseSeeOther(_page_url(token))


@strict_headers
@require_POST
@csrf_protect
@with_subscriber
def unsubscribe_all(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    """One click: push off and every topic off. Idempotent: a repeat writes nothing."""
    services.preference_center_unsubscribe_all(
        subscriber=subscriber, context=_consent_context(request, "unsubscribe all")
    )
    _confirm(
        request,
        _page_language(request, subscriber.language),
        lambda: _(
            "You are unsubscribed from all notifications. You can turn them on again here at any time."
        ),
    )
    return HttpResponseSeeOther(_page_url(token, _lang_query(request)))


@strict_headers
@require_POST
@csrf_protect
@with_subscriber
def pause(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    """Pause everything for a week or a month, or resume now."""
    form = PauseForm(request.POST)
    back = _page_url(token, _lang_query(request))
    if not form.is_valid():  # only a hand-made request gets here: the page has three buttons
        return HttpResponseSeeOther(back)
    period = form.cleaned_data["period"]
    services.preference_center_pause(
        subscriber=subscriber,
        context=_consent_context(request, f"pause: {period}"),
        paused_until=form.paused_until(now=timezone.now()),
    )
    # The page's status line says until when.
    _confirm(
        request,
        _page_language(request, subscriber.language),
        lambda: _("Notifications are paused.") if subscriber.is_paused else _("Notifications are on again."),
    )
    return HttpResponseSeeOther(back)


@strict_headers
@require_POST
@csrf_protect
@with_subscriber
def export_data(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    """Download my data: a JSON file of everything stored about the subscriber (reads only)."""
    from audiences.services.privacy import subscriber_export

    data = subscriber_export(subscriber=subscriber)
    response = JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"indent": 2})
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="my-notification-data-{stamp}.json"'
    return response


@strict_headers
@require_http_methods(["GET", "HEAD", "POST"])
@csrf_protect
@with_subscriber
def erase(request: HttpRequest, subscriber: Subscriber, token: str) -> HttpResponse:
    """Erase my data: GET asks for confirmation (changes nothing), POST erases."""
    language = _page_language(request, subscriber.language)
    if request.method == "POST":
        from audiences.services.privacy import subscriber_erase

        subscriber_erase(subscriber=subscriber, context=_consent_context(request, "erase my data"))
        return HttpResponseSeeOther(reverse("preferences:erased") + _lang_query(request))
    context = {
        "csrf_token": get_token(request),
        "erase_url": reverse("preferences:erase", kwargs={"token": token}) + _lang_query(request),
        "page_url": _page_url(token, _lang_query(request)),
    }
    return rendering.render("erase_confirm.html", context, language=language)


@strict_headers
@require_http_methods(["GET", "HEAD"])
def erased(request: HttpRequest) -> HttpResponse:
    """Where "Erase my data" ends: the link no longer works, so this page has no token."""
    return rendering.render("erased.html", {}, language=_page_language(request))
