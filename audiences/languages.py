"""Language codes and the fallback chain (pure logic, no database).

A subscriber's language is one of ``settings.LANGUAGES``. Content is looked up
along a chain: the exact code, then its base language, then the default language
(``pt-BR`` → ``pt-br`` → ``pt`` → ``en``). Campaigns extend the chain with their own
default language.
"""

from __future__ import annotations

from django.conf import settings


def supported_languages() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def normalize_language(code: str) -> str:
    """Lower-case and use Django's ``-`` separator: ``pt_BR`` → ``pt-br``."""
    return code.strip().replace("_", "-").lower()


def fallback_chain(code: str, *, default: str | None = None) -> list[str]:
    """The languages to try, best first, all supported, without duplicates.

    Unknown codes skip straight to their base language (``es-mx`` → ``es``) and then
    the default. ``default`` is the campaign's default language when given, else
    ``settings.LANGUAGE_CODE``.
    """
    supported = supported_languages()
    chain: list[str] = []

    def add(candidate: str) -> None:
        if candidate in supported and candidate not in chain:
            chain.append(candidate)

    normalized = normalize_language(code) if code else ""
    if normalized:
        add(normalized)
        for extra in settings.MODELTRANSLATION_FALLBACK_LANGUAGES.get(normalized, ()):
            if extra != settings.LANGUAGE_CODE:
                add(extra)
        add(normalized.split("-")[0])
    if default:
        add(normalize_language(default))
    add(settings.LANGUAGE_CODE)
    return chain


def is_rtl(code: str) -> bool:
    return normalize_language(code).split("-")[0] in settings.LANGUAGES_BIDI
