"""The preference center over HTTP: /preferences/<signed token>/ and its actions.

What a link scanner, an attacker and a user each get: GET never writes; every change
is a CSRF-protected POST that appends consent records (source preference_center);
bad links get one generic page and, in bulk, a 429; the page speaks the subscriber's
language (Arabic right-to-left) and sends strict security headers.
"""

from __future__ import annotations

import datetime as dt
import gettext
import re
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.test import Client
from django.utils import timezone

from audiences import preference_links
from audiences.models import ConsentRecord, Subscriber, Topic, TopicPreference
from audiences.services.preferences import ConsentContext
from tests.factories import DeviceFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db

LOCALE_DIR = Path(django_settings.BASE_DIR) / "locale"
TRANSLATED = ("es", "fr", "de", "it", "pt", "ar")
USER_AGENT = "Mozilla/5.0 (preference-center test)"


@pytest.fixture(autouse=True)
def own_cache(settings: Any) -> None:
    # The bad-token counters live in the cache: a private one per test.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }


@pytest.fixture
def topics() -> dict[str, Topic]:
    offers = TopicFactory(
        slug="offers",
        name="Offers",
        name_en="Offers",
        name_es="Ofertas",
        name_ar="العروض",
        description_en="Deals picked for you.",
        description_es="Ofertas elegidas para ti.",
        default_opt_in=True,
        sort_order=1,
    )
    news = TopicFactory(
        slug="news", name="News", name_en="News", name_es="Novedades", default_opt_in=False, sort_order=2
    )
    TopicFactory(slug="retired", name="Retired", name_en="Retired", is_active=False)
    return {"offers": offers, "news": news}


@pytest.fixture
def subscriber(topics: dict[str, Topic]) -> Subscriber:
    subscriber = SubscriberFactory(language="en", timezone="Europe/Berlin")
    DeviceFactory(subscriber=subscriber)
    return subscriber


def page_url(subscriber: Subscriber, suffix: str = "") -> str:
    return f"/preferences/{preference_links.make_token(subscriber=subscriber)}/{suffix}"


def form_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "push_opt_in": "on",
        "topics": ["offers"],
        "frequency_limit": "none",
        "quiet_start": "",
        "quiet_end": "",
        "timezone": "Europe/Berlin",
        "language": "en",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def snapshot(subscriber: Subscriber) -> tuple[Any, ...]:
    """Everything a request could change: the subscriber row, topic choices, the ledger."""
    row = Subscriber.objects.filter(pk=subscriber.pk).values().get()
    choices = sorted(
        TopicPreference.objects.filter(subscriber=subscriber).values_list("topic_id", "opted_in")
    )
    return row, choices, ConsentRecord.objects.count()


def text(response: Any) -> str:
    return str(response.content.decode())


def template(response: Any) -> str:
    """The name of the page's own template (the first one rendered)."""
    return str(response.templates[0].name)


# --- the page ---------------------------------------------------------------------------


def test_page_shows_the_stored_choices(
    client: Client, subscriber: Subscriber, topics: dict[str, Topic]
) -> None:
    TopicPreference.objects.create(subscriber=subscriber, topic=topics["news"], opted_in=True)
    Subscriber.objects.filter(pk=subscriber.pk).update(
        frequency_limit="weekly", quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7)
    )
    response = client.get(page_url(subscriber))
    assert response.status_code == 200
    assert template(response) == "preferences/page.html"
    html = text(response)
    assert 'id="id_push_opt_in" checked' in html
    assert 'value="offers" id="id_topic_offers" checked' in html  # default opt-in
    assert 'value="news" id="id_topic_news" checked' in html  # explicit choice
    assert "Retired" not in html  # inactive topics are not offered
    assert 'value="weekly" id="id_frequency_weekly" checked' in html
    assert 'id="id_quiet_start" value="22:00"' in html
    assert 'id="id_quiet_end" value="07:00"' in html
    assert '<option value="Europe/Berlin" selected>' in html
    assert '<option value="en" lang="en" selected>' in html


def test_page_reads_in_four_queries(
    client: Client, subscriber: Subscriber, django_assert_max_num_queries: Any
) -> None:
    url = page_url(subscriber)
    # subscriber, active topics, topic choices (+ one spare for the session framework)
    with django_assert_max_num_queries(4):
        assert client.get(url).status_code == 200


# --- GET never changes anything ----------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "query"),
    [
        ("", ""),
        ("", "?lang=es"),
        ("", "?lang=ar"),
        ("", "?lang=xx-bogus"),
        ("", "?push_opt_in=&topics=news&frequency_limit=weekly&language=de&timezone=Asia/Tokyo"),
        ("", "?quiet_start=22:00&quiet_end=07:00"),
        ("erase/", ""),
        ("erase/", "?lang=fr&confirm=yes"),
        ("unsubscribe/", ""),
        ("pause/", "?period=week"),
        ("export/", ""),
    ],
)
@pytest.mark.parametrize("method", ["get", "head"])
def test_get_and_head_never_change_anything(
    client: Client, subscriber: Subscriber, suffix: str, query: str, method: str
) -> None:
    before = snapshot(subscriber)
    response = getattr(client, method)(page_url(subscriber, suffix) + query)
    # The page and the erase confirmation are shown; the action URLs only take POST.
    assert response.status_code == (200 if suffix in {"", "erase/"} else 405)
    assert snapshot(subscriber) == before


# --- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "data"),
    [
        ("", form_data(push_opt_in=None)),
        ("unsubscribe/", {}),
        ("pause/", {"period": "month"}),
        ("export/", {}),
        ("erase/", {}),
    ],
)
def test_every_post_needs_the_csrf_token(subscriber: Subscriber, suffix: str, data: dict[str, Any]) -> None:
    browser = Client(enforce_csrf_checks=True)
    url = page_url(subscriber, suffix)
    before = snapshot(subscriber)
    assert browser.post(url, data).status_code == 403
    assert snapshot(subscriber) == before

    # The same POST from the page itself (cookie + form token) goes through.
    page = browser.get(page_url(subscriber))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(page))
    assert token is not None
    response = browser.post(url, {**data, "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code in {200, 303}


# --- bad links ------------------------------------------------------------------------------


def _tampered(subscriber: Subscriber) -> str:
    token = preference_links.make_token(subscriber=subscriber)
    value, stamp, signature = token.split(":")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{value}:{stamp}:{flipped}"


def _expired(subscriber: Subscriber) -> str:
    long_ago = timezone.now().timestamp() - django_settings.NOTIFYHUB_PREFERENCE_LINK_MAX_AGE - 60
    with mock.patch("django.core.signing.time.time", return_value=long_ago):
        return preference_links.make_token(subscriber=subscriber)


def _unknown(subscriber: Subscriber) -> str:
    return signing.dumps({"s": subscriber.pk + 10_000}, salt=preference_links.SALT, compress=False)


def _erased(subscriber: Subscriber) -> str:
    from audiences.services.privacy import subscriber_erase

    token = preference_links.make_token(subscriber=subscriber)
    subscriber_erase(subscriber=subscriber, context=ConsentContext(source="admin"))
    return token


def _other_salt(subscriber: Subscriber) -> str:
    # A valid signature for another purpose (e.g. a click link) is not a preference link.
    return signing.dumps({"s": subscriber.pk}, salt="notifyhub.something-else", compress=False)


BAD_TOKENS = {
    "tampered": _tampered,
    "truncated": lambda s: preference_links.make_token(subscriber=s)[:-6],
    "expired": _expired,
    "unknown subscriber": _unknown,
    "erased subscriber": _erased,
    "other salt": _other_salt,
    "garbage": lambda s: "not-a-token",
}


def test_every_bad_link_gets_the_same_generic_page(client: Client, subscriber: Subscriber) -> None:
    answers = {}
    for name, make in BAD_TOKENS.items():
        bad = make(subscriber)
        before = snapshot(subscriber)
        response = client.get(f"/preferences/{bad}/")
        posted = client.post(f"/preferences/{bad}/unsubscribe/")
        assert snapshot(subscriber) == before, name
        assert template(response) == "preferences/invalid.html", name
        assert posted.status_code == response.status_code, name
        answers[name] = (response.status_code, response.content, posted.content)
    # Byte for byte the same page, whatever the reason: nothing to learn from it.
    assert len(set(answers.values())) == 1, answers.keys()
    status, body, _posted = next(iter(answers.values()))
    assert status == 400
    assert b"This link does not work" in body
    assert subscriber.external_id.encode() not in body


def test_a_bad_link_writes_nothing_even_with_a_full_form(client: Client, subscriber: Subscriber) -> None:
    before = snapshot(subscriber)
    response = client.post(f"/preferences/{_tampered(subscriber)}/", form_data(push_opt_in=None, topics=[]))
    assert response.status_code == 400
    assert snapshot(subscriber) == before


# --- too many bad links → 429 ----------------------------------------------------------------


def test_too_many_bad_links_from_one_address_get_429(
    client: Client, subscriber: Subscriber, settings: Any
) -> None:
    settings.NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT = 3
    settings.NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW = 600
    good = page_url(subscriber)
    for _ in range(10):  # good links never count
        assert client.get(good).status_code == 200
    for attempt in range(3):
        assert client.get(f"/preferences/bad-{attempt}/").status_code == 400

    blocked = client.get("/preferences/bad-4/")
    assert blocked.status_code == 429
    assert 1 <= int(blocked["Retry-After"]) <= 600
    assert template(blocked) == "preferences/too_many.html"
    # While blocked, a valid link gets the 429 too (a scanner learns nothing), and
    # POSTs write nothing.
    before = snapshot(subscriber)
    assert client.get(good).status_code == 429
    assert client.post(page_url(subscriber, "unsubscribe/")).status_code == 429
    assert snapshot(subscriber) == before
    # Another address is not affected.
    assert client.get(good, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_the_block_ends_with_the_window(client: Client, subscriber: Subscriber, settings: Any) -> None:
    settings.NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT = 1
    settings.NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW = 60
    now = 1_800_000_000.0
    with mock.patch("audiences.preference_center.throttle.time.time", return_value=now):
        client.get("/preferences/bad/")
        assert client.get(page_url(subscriber)).status_code == 429
    with mock.patch("audiences.preference_center.throttle.time.time", return_value=now + 61):
        assert client.get(page_url(subscriber)).status_code == 200


# --- saving -----------------------------------------------------------------------------------


def test_saving_appends_consent_records_from_the_preference_center(
    client: Client, subscriber: Subscriber, topics: dict[str, Topic]
) -> None:
    url = page_url(subscriber)
    response = client.post(
        url,
        form_data(
            topics=["news"],
            frequency_limit="weekly",
            quiet_start="22:00",
            quiet_end="07:30",
            timezone="America/New_York",
            language="es",
        ),
        HTTP_USER_AGENT=USER_AGENT,
    )
    assert response.status_code == 303
    assert response["Location"] == url

    subscriber.refresh_from_db()
    assert subscriber.frequency_limit == "weekly"
    assert (subscriber.quiet_hours_start, subscriber.quiet_hours_end) == (dt.time(22), dt.time(7, 30))
    assert subscriber.timezone == "America/New_York"
    assert subscriber.language == "es"
    assert dict(
        TopicPreference.objects.filter(subscriber=subscriber).values_list("topic__slug", "opted_in")
    ) == {
        "offers": False,
        "news": True,
    }
    records = list(ConsentRecord.objects.filter(subscriber=subscriber))
    changes = {(r.field, r.topic.slug if r.topic else None): (r.old_value, r.new_value) for r in records}
    assert changes == {
        ("topic", "offers"): (True, False),
        ("topic", "news"): (False, True),
        ("frequency_limit", None): ("none", "weekly"),
        ("quiet_hours", None): (None, ["22:00:00", "07:30:00"]),
        ("language", None): ("en", "es"),
    }
    expected = ConsentContext(source="preference_center", ip_address="127.0.0.1", user_agent=USER_AGENT)
    hashes = expected.record_kwargs()
    for record in records:
        assert record.source == ConsentRecord.Source.PREFERENCE_CENTER
        assert (record.ip_hash, record.user_agent_hash) == (hashes["ip_hash"], hashes["user_agent_hash"])
        assert record.actor is None

    # Post/Redirect/Get: the page, now in Spanish, confirms the save.
    page = client.get(url)
    html = text(page)
    assert "Tus preferencias se han guardado." in html
    assert '<html lang="es" dir="ltr">' in html
    assert '<option value="America/New_York" selected>' in html


def test_saving_the_same_choices_again_writes_nothing(client: Client, subscriber: Subscriber) -> None:
    url = page_url(subscriber)
    data = form_data(topics=["news"], frequency_limit="daily")
    assert client.post(url, data).status_code == 303
    count = ConsentRecord.objects.count()
    response = client.post(url, data, follow=True)
    assert ConsentRecord.objects.count() == count
    assert "Nothing to change: your choices were already saved like this." in text(response)


def test_turning_push_off_is_recorded(client: Client, subscriber: Subscriber) -> None:
    response = client.post(page_url(subscriber), form_data(push_opt_in=None), follow=True)
    record = ConsentRecord.objects.get(subscriber=subscriber)
    assert (record.field, record.old_value, record.new_value) == ("push_opt_in", True, False)
    assert "Push notifications are off: we send you nothing." in text(response)


def test_unsubscribe_all_is_one_idempotent_post(
    client: Client, subscriber: Subscriber, topics: dict[str, Topic]
) -> None:
    url = page_url(subscriber, "unsubscribe/")
    response = client.post(url, HTTP_USER_AGENT=USER_AGENT)
    assert response.status_code == 303
    assert response["Location"] == url.removesuffix("unsubscribe/")  # back to the same link
    subscriber.refresh_from_db()
    assert subscriber.push_opt_in is False
    assert set(TopicPreference.objects.filter(subscriber=subscriber).values_list("opted_in", flat=True)) == {
        False
    }
    fields = sorted(
        (r.field, r.topic.slug if r.topic else "")
        for r in ConsentRecord.objects.filter(subscriber=subscriber)
    )
    # "news" was already off by default: making that explicit is not a change of consent.
    assert fields == [("push_opt_in", ""), ("topic", "offers")]
    assert {r.source for r in ConsentRecord.objects.all()} == {"preference_center"}

    count = ConsentRecord.objects.count()
    again = client.post(url, follow=True)
    assert ConsentRecord.objects.count() == count
    assert "You are unsubscribed from all notifications." in text(again)


def test_pause_for_a_week_or_a_month_then_resume(client: Client, subscriber: Subscriber) -> None:
    url = page_url(subscriber, "pause/")
    client.post(url, {"period": "week"})
    subscriber.refresh_from_db()
    assert subscriber.paused_until is not None
    assert abs(subscriber.paused_until - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)

    response = client.post(url + "?lang=de", {"period": "month"}, follow=True)
    subscriber.refresh_from_db()
    assert subscriber.paused_until is not None
    assert abs(subscriber.paused_until - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    html = text(response)
    assert response.redirect_chain[-1][0].endswith("/?lang=de")
    # The confirmation and the status line, in the page's language.
    assert "Benachrichtigungen sind pausiert." in html
    assert re.search(
        r'id="pc-status-paused">Benachrichtigungen sind bis zum .+ 2\d{3} \d\d:\d\d pausiert<', html
    )

    client.post(url, {"period": "resume"})
    subscriber.refresh_from_db()
    assert subscriber.paused_until is None
    records = ConsentRecord.objects.filter(subscriber=subscriber, field="paused_until")
    assert records.count() == 3
    assert {r.source for r in records} == {"preference_center"}
    # Resuming when not paused changes nothing.
    client.post(url, {"period": "resume"})
    assert records.count() == 3


# --- validation errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start", "Enter a time like 22:00."),
        ({"quiet_start": "22:00", "quiet_end": "soon"}, "quiet_end", "Enter a time like 07:00."),
        (
            {"quiet_start": "22:00", "quiet_end": ""},
            "quiet_end",
            "Enter when quiet hours end, or clear both times.",
        ),
        (
            {"quiet_start": "", "quiet_end": "07:00"},
            "quiet_start",
            "Enter when quiet hours start, or clear both times.",
        ),
        (
            {"quiet_start": "08:00", "quiet_end": "08:00"},
            "quiet_end",
            "Quiet hours must end at a different time than they start.",
        ),
        (
            {"timezone": "Mars/Olympus_Mons"},
            "timezone",
            "Choose a time zone from the list, for example Europe/Berlin.",
        ),
        ({"timezone": ""}, "timezone", "Choose your time zone."),
        ({"language": "xx"}, "language", "Choose one of the languages in the list."),
        ({"frequency_limit": "hourly"}, "frequency_limit", "Choose how often you want to hear from us."),
        ({"frequency_limit": None}, "frequency_limit", "Choose how often you want to hear from us."),
        ({"topics": ["offers", "retired"]}, "topics", "One of the topics you chose is no longer offered."),
    ],
)
def test_each_field_shows_its_validation_error(
    client: Client, subscriber: Subscriber, overrides: dict[str, Any], field: str, message: str
) -> None:
    before = snapshot(subscriber)
    response = client.post(page_url(subscriber), form_data(**{"language": "fr", **overrides}))
    assert response.status_code == 400
    assert snapshot(subscriber) == before
    html = text(response)
    assert f'id="id_{field}-error">{message}</p>' in html
    assert f'<a href="#id_{field}">' in html  # the summary links to the field
    assert 'role="alert" id="pc-error-summary"' in html
    if field in {"quiet_start", "quiet_end", "timezone", "language"}:
        assert f'id="id_{field}"' in html and 'aria-invalid="true"' in html
    # What the user entered is kept, not reset to the stored values.
    assert 'value="fr" lang="fr" selected' in html or field == "language"


def test_errors_are_shown_in_the_page_language(client: Client, subscriber: Subscriber) -> None:
    response = client.post(page_url(subscriber) + "?lang=es", form_data(quiet_start="99", quiet_end="07:00"))
    assert response.status_code == 400
    html = text(response)
    assert "Introduce una hora como 22:00." in html
    assert "Revisa lo siguiente:" in html


# --- security headers ---------------------------------------------------------------------------


def _assert_strict_headers(response: Any) -> None:
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= cache_control
    assert response["Referrer-Policy"] == "strict-origin"  # never the path (token); see security.py
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_every_preference_center_response_has_strict_headers(
    client: Client, subscriber: Subscriber, settings: Any
) -> None:
    settings.NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT = 1
    responses = [
        client.get(page_url(subscriber)),
        client.post(page_url(subscriber), form_data()),
        client.post(page_url(subscriber), form_data(timezone="nowhere")),
        client.post(page_url(subscriber, "unsubscribe/")),
        client.post(page_url(subscriber, "pause/"), {"period": "week"}),
        client.get(page_url(subscriber, "erase/")),
        client.get("/preferences/erased/"),
        client.get("/preferences/not-a-token/"),
        client.get("/preferences/not-a-token/"),  # now blocked: 429
    ]
    assert [r.status_code for r in responses] == [200, 303, 400, 303, 303, 200, 200, 400, 429]
    for response in responses:
        _assert_strict_headers(response)


def test_the_page_has_no_inline_script_or_style_and_only_local_assets(
    client: Client, subscriber: Subscriber
) -> None:
    html = text(client.get(page_url(subscriber)))
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for url in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert url.startswith("/"), f"not a local asset: {url}"


# --- language -------------------------------------------------------------------------------------


def test_the_page_follows_the_subscribers_language(client: Client, topics: dict[str, Topic]) -> None:
    german = SubscriberFactory(language="de")
    response = client.get(page_url(german), HTTP_ACCEPT_LANGUAGE="fr")
    html = text(response)
    assert response["Content-Language"] == "de"
    assert '<html lang="de" dir="ltr">' in html
    assert "Ihre Benachrichtigungseinstellungen" in html


def test_lang_switch_re_renders_in_spanish_without_saving(
    client: Client, subscriber: Subscriber, topics: dict[str, Topic]
) -> None:
    before = snapshot(subscriber)
    html = text(client.get(page_url(subscriber) + "?lang=es"))
    assert snapshot(subscriber) == before
    assert '<html lang="es" dir="ltr">' in html
    assert "Tus preferencias de notificaciones" in html
    assert "Guardar mis preferencias" in html
    assert ">Ofertas</label>" in html  # the topic's own translation
    assert "Ofertas elegidas para ti." in html
    assert ">Novedades</label>" in html
    assert "Como máximo una al día" in html
    assert '<optgroup label="Europa">' in html
    # The choices form starts on the language being shown, so saving keeps it.
    assert '<option value="es" lang="es" selected>' in html


def test_arabic_renders_right_to_left(
    client: Client, subscriber: Subscriber, topics: dict[str, Topic]
) -> None:
    response = client.get(page_url(subscriber) + "?lang=ar")
    html = text(response)
    assert response["Content-Language"] == "ar"
    assert '<html lang="ar" dir="rtl">' in html
    assert "تفضيلات الإشعارات الخاصة بك" in html
    assert ">العروض</label>" in html
    # A topic without an Arabic name falls back to English.
    assert ">News</label>" in html


def test_the_invalid_link_page_follows_the_browser_language(client: Client) -> None:
    html = text(client.get("/preferences/nope/", HTTP_ACCEPT_LANGUAGE="ar"))
    assert '<html lang="ar" dir="rtl">' in html
    assert "هذا الرابط لا يعمل" in html


def _po_entries(path: Path) -> list[tuple[str, str, bool, str]]:
    """(msgid, msgstr, fuzzy, references) for each entry of a .po file (no plurals used here)."""

    def unquote(lines: list[str]) -> str:
        return "".join(
            re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), line.strip()[1:-1])
            for line in lines
        )

    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = block.strip().splitlines()
        if not any(line.startswith("msgid ") for line in lines) or any(
            line.startswith("msgid_plural") for line in lines
        ):
            continue
        start = next(i for i, line in enumerate(lines) if line.startswith("msgid "))
        middle = next(i for i, line in enumerate(lines) if line.startswith("msgstr "))
        msgid = unquote([lines[start][6:], *lines[start + 1 : middle]])
        msgstr = unquote([lines[middle][7:], *lines[middle + 1 :]])
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines[:start])
        refs = " ".join(line for line in lines[:start] if line.startswith("#:"))
        entries.append((msgid, msgstr, fuzzy, refs))
    return entries


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_preference_center_string_is_translated_and_compiled(language: str) -> None:
    po = LOCALE_DIR / language / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run `manage.py compilemessages` (make test does)"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    ours = [
        entry
        for entry in _po_entries(po)
        if entry[0] and ("templates/preferences/" in entry[3] or "audiences/preference_center/" in entry[3])
    ]
    assert len(ours) > 60
    for msgid, msgstr, fuzzy, _refs in ours:
        assert msgstr and not fuzzy, f"{language}: no translation for {msgid!r}"
        assert compiled.gettext(msgid) == msgstr, f"{language}: {mo.name} is stale for {msgid!r}"


# --- download and erase -------------------------------------------------------------------------


def test_download_my_data_is_a_json_attachment_and_writes_nothing(
    client: Client, subscriber: Subscriber
) -> None:
    before = snapshot(subscriber)
    response = client.post(page_url(subscriber, "export/"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="my-notification-data-')
    _assert_strict_headers(response)
    assert response.json()["subscriber"]["external_id"] == subscriber.external_id
    assert snapshot(subscriber) == before


def test_erase_my_data_asks_first_then_erases_and_the_link_stops_working(
    client: Client, subscriber: Subscriber
) -> None:
    url = page_url(subscriber, "erase/")
    confirm = client.get(url + "?lang=fr")
    assert confirm.status_code == 200
    assert "Effacer vos données" in text(confirm)
    assert Subscriber.objects.get(pk=subscriber.pk).erased_at is None

    response = client.post(url + "?lang=fr", follow=True)
    assert response.redirect_chain == [("/preferences/erased/?lang=fr", 303)]
    assert "Vos données sont effacées" in text(response)
    erased = Subscriber.objects.get(pk=subscriber.pk)
    assert erased.erased_at is not None and erased.push_opt_in is False
    assert erased.consent_records.filter(field="erased", source="preference_center").exists()

    again = client.get(page_url(subscriber))
    assert again.status_code == 400
    assert template(again) == "preferences/invalid.html"
