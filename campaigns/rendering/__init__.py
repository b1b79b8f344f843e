"""Personalization of push messages: a restricted Django template language (pure, no database).

Title, body, click URL and data values of a variant are Django templates rendered
against a small context of plain values::

    {"subscriber": {"first_name", "last_name", "city", "country", "language", "timezone"},
     "attributes": {key: value},
     "event": {event_name: {property: value}}}   # the subscriber's latest event of each name

Why it is safe to let marketers write templates (``compiler``, ``nodes``, ``context``):

- A dedicated :class:`~django.template.Engine`, not the project's: no loaders, and
  its only library holds the allowed tags and filters, so ``{% load %}``,
  ``{% include %}``, ``{% url %}``… do not even parse. Compiled templates are also
  checked node by node, so a library change cannot widen the language silently.
- Every variable path is checked at compile time against the context shape, and the
  context holds plain scalars (never model instances) behind lookup-only objects:
  nothing reaches the database, settings, methods or private attributes.
- Filter arguments that size their output (``stringformat``, ``floatformat``) must be
  small literals, so a subscriber's data cannot ask for a 10⁹-character string.

Why the size bound holds (``size``): every ``{{ … }}`` and ``{% firstof %}`` prints
at most ``max(VARIABLE_MAX_CHARS, longest string literal in it)`` characters, cut
with "…", with control characters removed, so each printed character costs at most
4 bytes in JSON. Static text is counted exactly and an ``{% if %}`` as its largest
branch: the estimate is an upper bound of what :func:`render_message` produces.
"""

from campaigns.rendering.compiler import (
    ALLOWED_FILTERS,
    ALLOWED_TAGS,
    LITERAL_ARGUMENT_FILTERS,
    PersonalizationError,
    compile_template,
    template_variables,
)
from campaigns.rendering.context import CONTEXT_VALUE_MAX_CHARS, SUBSCRIBER_FIELDS, build_context
from campaigns.rendering.nodes import VARIABLE_MAX_CHARS
from campaigns.rendering.render import RenderedMessage, render_message
from campaigns.rendering.size import (
    FCM_PAYLOAD_LIMIT,
    MAX_BYTES_PER_CHAR,
    RESERVED_BYTES,
    check_payload_size,
    worst_case_payload_bytes,
)
from campaigns.rendering.validation import validate_variant

__all__ = [
    "ALLOWED_FILTERS",
    "ALLOWED_TAGS",
    "CONTEXT_VALUE_MAX_CHARS",
    "FCM_PAYLOAD_LIMIT",
    "LITERAL_ARGUMENT_FILTERS",
    "MAX_BYTES_PER_CHAR",
    "RESERVED_BYTES",
    "SUBSCRIBER_FIELDS",
    "VARIABLE_MAX_CHARS",
    "PersonalizationError",
    "RenderedMessage",
    "build_context",
    "check_payload_size",
    "compile_template",
    "render_message",
    "template_variables",
    "validate_variant",
    "worst_case_payload_bytes",
]
