"""Rendering the preference center's templates: compiled once per language.

The pages use the project's templates (``templates/preferences/``) and Django's
template language, through one template engine per language whose ``i18n`` and
``static`` libraries fold constant translations and asset URLs into the compiled
template (``template_library``). What is left to render per request is the
subscriber's own data. The engines take the project engine's directories; they add
no context processors: the views pass everything a template uses.

With ``DEBUG`` on, templates are not cached, so edits show without a restart. Tests
that change the settings a compiled template depends on get fresh engines
(``setting_changed``).
"""

from __future__ import annotations

import functools
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse
from django.template import Context, Engine
from django.utils import translation

LIBRARY = "audiences.preference_center.template_library"
# What the compiled templates depend on besides their source.
COMPILED_FROM = frozenset({"TEMPLATES", "DEBUG", "STATIC_URL", "STORAGES", "LANGUAGES", "LOCALE_PATHS"})


class _LanguageEngine(Engine):
    """A template engine whose templates are compiled for one language."""

    def __init__(self, language: str, **options: Any) -> None:
        self.language = language
        super().__init__(**options)


@functools.lru_cache(maxsize=32)
def _engine(language: str) -> _LanguageEngine:
    project = Engine.get_default()
    loaders: list[Any] = ["django.template.loaders.filesystem.Loader"]
    if project.app_dirs:
        loaders.append("django.template.loaders.app_directories.Loader")
    if not project.debug:
        loaders = [("django.template.loaders.cached.Loader", loaders)]
    return _LanguageEngine(
        language,
        dirs=project.dirs,
        loaders=loaders,
        debug=project.debug,
        string_if_invalid=project.string_if_invalid,
        file_charset=project.file_charset,
        libraries={"i18n": LIBRARY, "static": LIBRARY},
    )


def render_to_string(template: str, context: dict[str, Any], *, language: str) -> str:
    """``preferences/<template>`` rendered in ``language`` (which is active while it renders)."""
    with translation.override(language):
        compiled = _engine(language).get_template(f"preferences/{template}")
        return compiled.render(Context(context, autoescape=True))


def render(template: str, context: dict[str, Any], *, language: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(render_to_string(template, context, language=language), status=status)
    response["Content-Language"] = language
    return response


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in COMPILED_FROM:
        _engine.cache_clear()
