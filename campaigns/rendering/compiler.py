"""Compiling message templates: the restricted engine, and refusals that name the problem."""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import Any

from django.template import Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, Template, TextNode, TokenType, Variable, VariableNode
from django.template.defaulttags import CommentNode, FirstOfNode, IfNode
from django.utils.functional import Promise

from campaigns.rendering.context import SUBSCRIBER_FIELDS
from campaigns.rendering.nodes import constants, expressions, harden, variables, walk
from notifyhub.exceptions import ApplicationError

ALLOWED_TAGS = ("if", "firstof", "comment")
# Text filters that cannot reach anything but their input. Refused on purpose: the
# HTML ones (safe, escape, linebreaks, striptags…: push text is not HTML), those that
# pad to a width taken from the template (center, ljust, rjust: output size), list and
# object ones (join, first, dictsort, pprint…: the context has no lists or objects).
ALLOWED_FILTERS = (
    "add",
    "capfirst",
    "cut",
    "date",
    "default",
    "default_if_none",
    "floatformat",
    "length",
    "lower",
    "pluralize",
    "slice",
    "stringformat",
    "title",
    "truncatechars",
    "truncatewords",
    "upper",
    "urlencode",
    "yesno",
)
# Their argument shapes the output, so it is written in the template, not read from data.
LITERAL_ARGUMENT_FILTERS = frozenset(
    {"date", "floatformat", "pluralize", "slice", "stringformat", "truncatechars", "truncatewords"}
    | {"urlencode", "yesno"}
)

_BLOCK_COMMANDS = frozenset({"if", "elif", "else", "endif", "firstof", "comment", "endcomment"})
_CONSTANTS = frozenset({"True", "False", "None"})  # Django's Context provides them
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNCLOSED = re.compile(r"\{[{%#]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# Small widths and precisions only; no %c (control characters) nor %r/%a (reprs).
_STRINGFORMAT = re.compile(r"[#0 +-]*\d{0,2}(?:\.\d{1,2})?[sdiouxXeEfFgG]\Z")
_FLOATFORMAT = re.compile(r"-?\d{1,2}[gu]{0,2}\Z")
_FIELD_LABELS = {"title": "Title", "body": "Body", "click_url": "Click URL", "payload": "Message size"}
_FILTER_NAMES = {defaultfilters.register.filters[name]: name for name in ALLOWED_FILTERS}
_TAGS_HELP = f"allowed: {', '.join(ALLOWED_TAGS)}"
_FILTERS_HELP = f"allowed: {', '.join(ALLOWED_FILTERS)}"
_VARIABLES_HELP = "use subscriber.<field>, attributes.<key> or event.<event name>.<property>"


class PersonalizationError(ApplicationError):
    """A template cannot be used; ``field`` is "title", "body", "click_url", "data.<key>" or "payload"."""

    def __init__(self, message: str, *, field: str, extra: dict[str, object] | None = None) -> None:
        super().__init__(message, extra={"field": field, **(extra or {})})
        self.field = field


class _Refused(Exception):
    """A problem in a template, before it is tied to a field."""

    def __init__(self, detail: str, *, lineno: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.lineno = lineno


def field_label(field: str) -> str:
    if field.startswith("data."):
        return f"Data “{field.removeprefix('data.')}”"
    return _FIELD_LABELS.get(field, field.replace("_", " ").capitalize())


def variant_fields(
    *, title: str, body: str, click_url: str, data: Mapping[str, Any] | None
) -> dict[str, str]:
    """Field name → template source; data keys are fixed strings, their values templates."""
    fields = {"title": title, "body": body, "click_url": click_url}
    fields.update({f"data.{key}": str(value) for key, value in (data or {}).items()})
    return fields


@lru_cache(maxsize=1)
def _engine() -> Engine:
    """No loaders, no project libraries: only the allowed tags and filters exist."""
    library = Library()
    library.tag("if", defaulttags.do_if)
    library.tag("firstof", defaulttags.firstof)
    library.tag("comment", defaulttags.comment)
    for name in ALLOWED_FILTERS:
        library.filter(name, defaultfilters.register.filters[name])
    engine = Engine(loaders=[], libraries={}, autoescape=False, debug=False, string_if_invalid="")
    # Engine always adds Django's default builtins (for, load, include…): replace them.
    engine.template_builtins = [library]
    return engine


def _listed(names: AbstractSet[str], *, limit: int = 20) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:limit]) + (", …" if len(ordered) > limit else "")


def _variable_problem(
    lookups: tuple[str, ...], *, known_attributes: frozenset[str] | None, known_events: frozenset[str] | None
) -> str | None:
    path = ".".join(lookups)
    head, rest = lookups[0], lookups[1:]
    if not rest and head in _CONSTANTS:
        return None
    if head == "subscriber":
        if len(rest) == 1 and rest[0] in SUBSCRIBER_FIELDS:
            return None
        return f"unknown variable “{path}” — use {', '.join(f'subscriber.{f}' for f in SUBSCRIBER_FIELDS)}"
    if head == "attributes":
        if len(rest) != 1:
            return f"“{path}” is not available — write attributes.<key>, e.g. attributes.plan"
        if not _NAME.match(rest[0]):
            return f"“{path}” is not available — attribute keys start with a letter (then letters, digits, _)"
        if known_attributes is not None and rest[0] not in known_attributes:
            known = (
                f"known attributes: {_listed(known_attributes)}"
                if known_attributes
                else "none is defined yet"
            )
            return f"unknown attribute “{path}” — {known}"
        return None
    if head == "event":
        if len(rest) != 2:
            return f"“{path}” is not available — write event.<event name>.<property>, e.g. event.purchase.sku"
        if not _NAME.match(rest[0]) or not _NAME.match(rest[1]):
            return f"“{path}” is not available — event and property names start with a letter"
        if known_events is not None and rest[0] not in known_events:
            known = f"known events: {_listed(known_events)}" if known_events else "none has been received yet"
            return f"unknown event “{rest[0]}” in “{path}” — {known}"
        return None
    return f"unknown variable “{path}” — {_VARIABLES_HELP}"


def _filter_problem(name: str, args: list[tuple[bool, Any]]) -> str | None:
    if name not in LITERAL_ARGUMENT_FILTERS or not args:
        return None
    arg = args[0][1]
    if isinstance(arg, Variable):
        if arg.lookups is not None:
            return f"the filter “{name}” takes a value written in the template, not the variable “{arg.var}”"
        arg = arg.literal
    if name == "stringformat" and not _STRINGFORMAT.match(str(arg)):
        return f'stringformat:"{arg}" is not allowed — use a format like "s", "d", ".2f" or "05d"'
    if name == "floatformat" and not _FLOATFORMAT.match(str(arg)):
        return f'floatformat:"{arg}" is not allowed — give the decimals, from -99 to 99, e.g. floatformat:2'
    return None


def _syntax_problem(message: str) -> str:
    """Django's syntax message, reworded where it would confuse a marketer."""
    if found := re.match(r"Invalid filter: '(.*)'\Z", message):
        if found[1] in defaultfilters.register.filters:
            return f"the filter “{found[1]}” is not allowed in messages; {_FILTERS_HELP}"
        return f"unknown filter “{found[1]}” — {_FILTERS_HELP}"
    if found := re.match(r"Variables and attributes may not begin with underscores: '(.*)'\Z", message):
        return f"“{found[1]}” is not available — names starting with “_” are private"
    if found := re.match(r"(\w+) requires (\d+) arguments, (\d+) provided\Z", message):
        if int(found[2]) > int(found[3]):
            return f'the filter “{found[1]}” needs a value, e.g. {found[1]}:"…"'
        return f"the filter “{found[1]}” takes no value"
    if found := re.match(r"Invalid block tag on line \d+: '(.*?)'(?:, expected (.*?))?\.", message):
        expected = f"; expected {found[2]}" if found[2] else ""
        return f"the tag “{found[1]}” does not belong here (no matching “if” or “comment”?){expected}"
    return message


def _check_tags(source: str) -> None:
    """Refuse block tags outside the language, by name (comment bodies are skipped, as Django does)."""
    in_comment = False
    for token in Lexer(source).tokenize():
        if token.token_type != TokenType.BLOCK:
            continue
        if in_comment:
            in_comment = token.contents != "endcomment"
            continue
        bits = token.contents.split()
        if not bits:
            continue  # Django reports the empty tag
        if bits[0] == "comment":
            in_comment = True
        elif bits[0] not in _BLOCK_COMMANDS:
            raise _Refused(
                f"the tag “{bits[0]}” is not allowed in messages; {_TAGS_HELP}", lineno=token.lineno
            )


def _check_nodes(
    template: Template, *, known_attributes: frozenset[str] | None, known_events: frozenset[str] | None
) -> None:
    """Node classes, filters, filter arguments and every variable, in nested nodes too."""
    for node in walk(template.nodelist):
        lineno = node.token.lineno if node.token is not None else None
        if not isinstance(node, TextNode | VariableNode | IfNode | FirstOfNode | CommentNode):
            tag = node.token.contents.split()[0] if node.token is not None else type(node).__name__
            raise _Refused(f"the tag “{tag}” is not allowed in messages; {_TAGS_HELP}", lineno=lineno)
        if isinstance(node, TextNode) and (opening := _UNCLOSED.search(node.s)):
            # Django leaves a tag without its end (or split over lines) as text: it would be sent as is.
            closing = {"{{": "}}", "{%": "%}", "{#": "#}"}[opening[0]]
            raise _Refused(f"“{opening[0]}” is not closed by “{closing}” on the same line", lineno=lineno)
        if isinstance(node, FirstOfNode) and node.asvar:
            raise _Refused(
                "“firstof … as …” is not supported — put {% firstof … %} where the text goes", lineno=lineno
            )
        for expression in expressions(node):
            if any(isinstance(value, Promise) for value in constants(expression)):
                raise _Refused(
                    "translated strings _(…) are not supported — write the text itself", lineno=lineno
                )
            for func, args in expression.filters:
                name = _FILTER_NAMES.get(func)
                if name is None:
                    raise _Refused(
                        f"a filter in “{expression.token}” is not allowed; {_FILTERS_HELP}", lineno=lineno
                    )
                if problem := _filter_problem(name, args):
                    raise _Refused(problem, lineno=lineno)
            for variable in variables(expression):
                assert variable.lookups is not None
                problem = _variable_problem(
                    variable.lookups, known_attributes=known_attributes, known_events=known_events
                )
                if problem:
                    raise _Refused(problem, lineno=lineno)


@lru_cache(maxsize=1024)
def _compile(
    source: str, known_attributes: frozenset[str] | None, known_events: frozenset[str] | None
) -> Template:
    if surrogate := _SURROGATE.search(source):
        # Half of a UTF-16 pair, not text: it cannot be encoded to be sent.
        raise _Refused(f"the character U+{ord(surrogate[0]):04X} is not valid text — type it again")
    _check_tags(source)
    try:
        template = _engine().from_string(source)
    except TemplateSyntaxError as exc:
        lineno = getattr(getattr(exc, "token", None), "lineno", None)
        raise _Refused(_syntax_problem(str(exc)), lineno=lineno) from exc
    _check_nodes(template, known_attributes=known_attributes, known_events=known_events)
    harden(template.nodelist)
    return template


def compile_template(
    *,
    source: str,
    field: str,
    known_attributes: AbstractSet[str] | None = None,
    known_events: AbstractSet[str] | None = None,
) -> Template:
    """The validated template, ready to render; or a PersonalizationError naming ``field`` and the problem.

    ``known_attributes``/``known_events``, when given (save time), restrict
    ``attributes.<key>`` and ``event.<name>.…`` to those names; without them any name
    is accepted (send time: the template was checked when saved). Compiled templates
    are cached: a send renders the same few templates for thousands of subscribers.
    """
    known_attributes = None if known_attributes is None else frozenset(known_attributes)
    known_events = None if known_events is None else frozenset(known_events)
    try:
        return _compile(source, known_attributes, known_events)
    except _Refused as exc:
        where = f"line {exc.lineno}: " if exc.lineno is not None and "\n" in source else ""
        raise PersonalizationError(f"{field_label(field)}: {where}{exc.detail}", field=field) from exc


def template_variables(*, source: str) -> set[str]:
    """The variable paths a template uses, e.g. ``{"subscriber.first_name", "attributes.plan"}``."""
    template = compile_template(source=source, field="template")
    return {
        ".".join(variable.lookups)
        for node in walk(template.nodelist)
        for expression in expressions(node)
        for variable in variables(expression)
        if variable.lookups is not None and variable.var not in _CONSTANTS
    }
