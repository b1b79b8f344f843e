"""``{% load i18n static %}`` for the preference center's templates, folded at compile time.

Django's own tags, with one difference: a ``{% translate "…" %}``, a
``{% blocktranslate %}…{% endblocktranslate %}`` without variables, or a
``{% static "…" %}`` whose argument is a constant becomes plain text when the
template is compiled, because its output depends only on the language (and on the
static files manifest, fixed for the life of the process). The templates are
compiled once per language (``rendering``), so a page renders without evaluating
about sixty translation tags per request — they cost more than the rest of the page.

Anything else (a variable, ``asvar``, a ``with`` or ``count``) is left to Django's tag
at render time, exactly as in any other template.
"""

from __future__ import annotations

from collections.abc import Callable

from django.template import Context, Library, Node
from django.template.base import FilterExpression, Parser, TextNode, Token, TokenType
from django.templatetags import i18n as django_i18n
from django.templatetags import static as django_static
from django.utils import translation

register = Library()
register.tags.update(django_i18n.register.tags)
register.filters.update(django_i18n.register.filters)
register.tags.update(django_static.register.tags)
register.filters.update(django_static.register.filters)

TagCompiler = Callable[[Parser, Token], Node]


def _language(parser: Parser) -> str | None:
    """The language the template is being compiled for (``rendering._LanguageEngine``)."""
    loader = getattr(parser.origin, "loader", None)
    return getattr(getattr(loader, "engine", None), "language", None)


def _is_constant(expression: FilterExpression | None) -> bool:
    # A quoted literal: the parser keeps its value (a str), or a Variable holding it as
    # ``literal`` (as TranslateNode does, to translate it).
    return expression is None or (
        not expression.filters
        and (isinstance(expression.var, str) or getattr(expression.var, "literal", None) is not None)
    )


def _translate_is_constant(node: Node) -> bool:
    return (
        isinstance(node, django_i18n.TranslateNode)
        and node.asvar is None
        and _is_constant(node.filter_expression)
        and _is_constant(node.message_context)
    )


def _block_translate_is_constant(node: Node) -> bool:
    return (
        isinstance(node, django_i18n.BlockTranslateNode)
        and not node.extra_context
        and node.plural is None
        and node.asvar is None
        and _is_constant(node.message_context)
        and all(token.token_type == TokenType.TEXT for token in node.singular)
    )


def _static_is_constant(node: Node) -> bool:
    return isinstance(node, django_static.StaticNode) and node.varname is None and _is_constant(node.path)


def _folded(compile_tag: TagCompiler, is_constant: Callable[[Node], bool]) -> TagCompiler:
    def compile_folded(parser: Parser, token: Token) -> Node:
        node = compile_tag(parser, token)
        language = _language(parser)
        if language is None or not is_constant(node):
            return node
        with translation.override(language):
            # Rendered as the tag would render at request time (autoescaped context).
            return TextNode(node.render(Context(autoescape=True)))

    return compile_folded


for _name in ("translate", "trans"):
    register.tag(_name, _folded(django_i18n.do_translate, _translate_is_constant))
for _name in ("blocktranslate", "blocktrans"):
    register.tag(_name, _folded(django_i18n.do_block_translate, _block_translate_is_constant))
register.tag("static", _folded(django_static.do_static, _static_is_constant))
