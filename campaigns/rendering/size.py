"""The worst-case size of a rendered variant, checked against FCM's limit when it is saved."""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from django.template.base import NodeList, TextNode
from django.template.defaulttags import CommentNode, IfNode

from campaigns.rendering.compiler import PersonalizationError, compile_template, field_label, variant_fields
from campaigns.rendering.nodes import VARIABLE_MAX_CHARS, CappedFirstOfNode, CappedVariableNode

# https://firebase.google.com/docs/cloud-messaging/concept-options#notifications_and_data_messages
FCM_PAYLOAD_LIMIT = 4096
# Kept for what delivery adds around the variant's texts: the preference-center URL,
# campaign/variant/send ids in ``data``, the FCM envelope.
RESERVED_BYTES = 512
# A printed character in JSON (ensure_ascii=False) once control characters are
# removed: 1 to 4 bytes of UTF-8, or 2 for \" \\ \t \n \r.
MAX_BYTES_PER_CHAR = 4


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _bound(nodelist: NodeList) -> int:
    total = 0
    for node in nodelist:
        if isinstance(node, TextNode):
            total += _json_bytes(node.s) - 2  # without its quotes
        elif isinstance(node, CappedVariableNode | CappedFirstOfNode):
            total += node.cap * MAX_BYTES_PER_CHAR
        elif isinstance(node, IfNode):
            total += max(_bound(branch) for _condition, branch in node.conditions_nodelists)
        elif not isinstance(node, CommentNode):  # pragma: no cover - compile_template refuses them
            raise AssertionError(f"no size bound for {node!r}")
    return total


def _bounds(
    *,
    title: str,
    body: str,
    click_url: str,
    data: Mapping[str, Any] | None,
    known_attributes: AbstractSet[str] | None,
    known_events: AbstractSet[str] | None,
) -> tuple[int, dict[str, int]]:
    """Bytes of the JSON skeleton (keys, quotes, separators), and each field value's bound."""
    skeleton = {"title": "", "body": "", "click_url": "", "data": {str(key): "" for key in (data or {})}}
    fields = variant_fields(title=title, body=body, click_url=click_url, data=data)
    knowns = {"known_attributes": known_attributes, "known_events": known_events}
    bounds = {
        field: _bound(compile_template(source=source, field=field, **knowns).nodelist)
        for field, source in fields.items()
    }
    return _json_bytes(skeleton), bounds


def worst_case_payload_bytes(
    *,
    title: str,
    body: str,
    click_url: str = "",
    data: Mapping[str, str] | None = None,
    known_attributes: AbstractSet[str] | None = None,
    known_events: AbstractSet[str] | None = None,
) -> int:
    """An upper bound of ``len(json.dumps(asdict(message), ensure_ascii=False).encode())``.

    ``message`` is what :func:`render_message` makes of these templates for any
    subscriber. Keys, quotes and separators are counted exactly, static text as its
    JSON-escaped UTF-8, each ``{{ … }}``/``{% firstof %}`` as its character cap times
    ``MAX_BYTES_PER_CHAR``, an ``{% if %}`` as its largest branch. Raises
    PersonalizationError if a template does not compile.
    """
    knowns = {"known_attributes": known_attributes, "known_events": known_events}
    skeleton, bounds = _bounds(title=title, body=body, click_url=click_url, data=data, **knowns)
    return skeleton + sum(bounds.values())


def check_payload_size(
    *,
    title: str,
    body: str,
    click_url: str = "",
    data: Mapping[str, str] | None = None,
    known_attributes: AbstractSet[str] | None = None,
    known_events: AbstractSet[str] | None = None,
) -> None:
    """Refuse a variant that could exceed FCM's limit for some subscriber.

    The texts may take ``FCM_PAYLOAD_LIMIT - RESERVED_BYTES``: FCM rejects a larger
    message at send time, subscriber by subscriber, long after the marketer has left.
    """
    knowns = {"known_attributes": known_attributes, "known_events": known_events}
    skeleton, bounds = _bounds(title=title, body=body, click_url=click_url, data=data, **knowns)
    worst = skeleton + sum(bounds.values())
    available = FCM_PAYLOAD_LIMIT - RESERVED_BYTES
    if worst <= available:
        return
    largest = max(bounds, key=lambda field: bounds[field])
    raise PersonalizationError(
        f"{field_label('payload')}: for some subscribers this message could take {worst:,} bytes, "
        f"{worst - available:,} more than the {available:,} available (FCM allows {FCM_PAYLOAD_LIMIT:,}; "
        f"{RESERVED_BYTES} are kept for links and ids). Shorten the {field_label(largest).lower()} "
        f"(up to {bounds[largest]:,} bytes) or use fewer variables: each can print up to "
        f"{VARIABLE_MAX_CHARS} characters ({VARIABLE_MAX_CHARS * MAX_BYTES_PER_CHAR} bytes).",
        field="payload",
        extra={"bytes": worst, "available": available},
    )
