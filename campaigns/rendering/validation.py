"""Everything wrong with a variant's templates, at once, for the admin to show per field."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from campaigns.rendering.compiler import PersonalizationError, compile_template, field_label, variant_fields
from campaigns.rendering.size import check_payload_size


def validate_variant(
    *,
    title: str,
    body: str,
    click_url: str = "",
    data: Mapping[str, str] | None = None,
    known_attributes: AbstractSet[str] | None = None,
    known_events: AbstractSet[str] | None = None,
) -> list[PersonalizationError]:
    """One error per broken field, then the size if every field compiles (it needs them compiled).

    A blank title or body is an error: such a message would never be sent.
    """
    knowns = {"known_attributes": known_attributes, "known_events": known_events}
    errors: list[PersonalizationError] = []
    for field, source in variant_fields(title=title, body=body, click_url=click_url, data=data).items():
        if field in ("title", "body") and not source.strip():
            errors.append(PersonalizationError(f"{field_label(field)}: enter a {field}.", field=field))
            continue
        try:
            compile_template(source=source, field=field, **knowns)
        except PersonalizationError as exc:
            errors.append(exc)
    if not errors:
        try:
            check_payload_size(title=title, body=body, click_url=click_url, data=data, **knowns)
        except PersonalizationError as exc:
            errors.append(exc)
    return errors
