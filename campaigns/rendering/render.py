"""Rendering a variant for one subscriber."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.template import Context

from campaigns.rendering.compiler import compile_template
from campaigns.rendering.context import template_context


@dataclass(frozen=True)
class RenderedMessage:
    title: str
    body: str
    click_url: str
    data: dict[str, str]

    @property
    def is_empty(self) -> bool:
        """A blank title or body: the message is not sent (the caller records ``render_empty``)."""
        return not self.title.strip() or not self.body.strip()


def _render(source: str, *, field: str, context: Context) -> str:
    if not source:
        return ""
    return str(compile_template(source=source, field=field).render(context)).strip()


def render_message(
    *,
    title: str,
    body: str,
    click_url: str = "",
    data: Mapping[str, str] | None = None,
    context: Mapping[str, Any],
) -> RenderedMessage:
    """Every field rendered for one subscriber, without surrounding whitespace.

    Never fails on data: a missing value prints "" (``default`` applies), ``None``
    prints "", a filter failing on odd data prints "". Raises PersonalizationError
    only for a template that does not compile, which validation on save rules out.
    Dates and numbers are formatted in the active language.
    """
    rendering_context = template_context(context)
    return RenderedMessage(
        title=_render(title, field="title", context=rendering_context),
        body=_render(body, field="body", context=rendering_context),
        click_url=_render(click_url, field="click_url", context=rendering_context),
        data={
            str(key): _render(str(value), field=f"data.{key}", context=rendering_context)
            for key, value in (data or {}).items()
        },
    )
