"""The page's ``<select>`` pickers, built in Python: time zones and languages.

Their options are built once per process (and page language) and reused, with the
current value marked by a string replace (the result kept for the most used zones):
rendering them through the template engine, one node per option, cost more than the
rest of the page together.

Time zones: every zone of the tz database's ``zone.tab`` (the zones people pick by
country and city), read from the system's tz database or the ``tzdata`` package, and
grouped by region (keyboard-searchable by city name; works without JavaScript);
without ``zone.tab``, every zone under a geographic region. Other valid IANA names
(legacy aliases such as ``US/Eastern`` or ``Africa/Asmera``) are still accepted when
saved, and offered when they are the subscriber's current zone.

Languages: each offered language in its own name ("Deutsch", "العربيّة"), with its
``lang`` attribute, so it is readable whatever the page's language.
"""

from __future__ import annotations

import functools
import zoneinfo
from importlib import resources
from pathlib import Path

from django.conf import settings
from django.utils import translation
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language_info
from django.utils.translation import gettext as _

# The tz database's geographic regions, in the order the picker lists them.
REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@functools.cache
def all_timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on every call: remember it.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "Factory"}


def is_timezone(name: str) -> bool:
    return name in all_timezones()


def _zone_tab() -> str | None:
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    try:
        return resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None


@functools.cache
def offered_timezones() -> tuple[str, ...]:
    """The zones the picker lists, sorted: ``zone.tab``'s, or every regional zone."""
    known = all_timezones()
    text = _zone_tab()
    if text is not None:
        listed = {
            line.split("\t")[2]
            for line in text.splitlines()
            if line and not line.startswith("#") and line.count("\t") >= 2
        }
        zones = listed & known
    else:
        zones = {zone for zone in known if zone.split("/")[0] in REGIONS and "/" in zone}
    return tuple(sorted(zones))


def _region_label(region: str) -> str:
    labels = {
        "Africa": _("Africa"),
        "America": _("Americas"),
        "Antarctica": _("Antarctica"),
        "Arctic": _("Arctic"),
        "Asia": _("Asia"),
        "Atlantic": _("Atlantic Ocean"),
        "Australia": _("Australia"),
        "Europe": _("Europe"),
        "Indian": _("Indian Ocean"),
        "Pacific": _("Pacific Ocean"),
    }
    return labels[region]


def _city_label(name: str) -> str:
    # "America/Argentina/Buenos_Aires" → "Argentina / Buenos Aires"
    return " / ".join(name.split("/")[1:]).replace("_", " ")


@functools.lru_cache(maxsize=16)
def _options_html(language: str) -> str:
    with translation.override(language):  # the region labels
        utc_label = escape(_("UTC (Coordinated Universal Time)"))
        parts = [f'<option value="UTC">{utc_label}</option>']
        zones = offered_timezones()
        for region in REGIONS:
            members = [zone for zone in zones if zone.startswith(region + "/")]
            parts.append(f'<optgroup label="{escape(_region_label(region))}">')
            parts.extend(
                f'<option value="{escape(zone)}">{escape(_city_label(zone))}</option>' for zone in members
            )
            parts.append("</optgroup>")
    return "".join(parts)


@functools.lru_cache(maxsize=64)
def timezone_options(*, selected: str, language: str) -> SafeString:
    """The ``<option>`` elements of the picker in ``language``, with ``selected`` marked."""
    html = _options_html(language)
    marker = f'<option value="{escape(selected)}">'
    if marker in html:
        html = html.replace(marker, f'<option value="{escape(selected)}" selected>', 1)
    elif selected:
        # A legacy alias (or a zone this system does not know) stays visible and selected.
        html = f'<option value="{escape(selected)}" selected>{escape(selected)}</option>' + html
    return mark_safe(html)  # noqa: S308 — built from escaped tz names and translated labels


# --- languages ---------------------------------------------------------------------


def language_choices() -> list[tuple[str, str]]:
    """``(code, name in that language)`` for each language in ``settings.LANGUAGES``."""
    return list(_language_choices(tuple(code for code, _name in settings.LANGUAGES)))


@functools.lru_cache(maxsize=4)
def _language_choices(codes: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Each name is in its own language: the same whatever the page's language.
    return tuple((code, get_language_info(code)["name_local"]) for code in codes)


@functools.lru_cache(maxsize=64)
def language_options(*, selected: str) -> SafeString:
    """The ``<option>`` elements of a language picker, with ``selected`` marked."""
    return mark_safe(  # noqa: S308 — escaped codes and names
        "".join(
            f'<option value="{escape(code)}" lang="{escape(code)}"{" selected" if code == selected else ""}>'
            f"{escape(name)}</option>"
            for code, name in language_choices()
        )
    )
