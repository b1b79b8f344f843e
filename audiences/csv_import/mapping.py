"""Column mapping: which file column feeds which field (pure logic).

Headers are compared after :func:`normalize_header` (case, spaces and punctuation
ignored), so "Customer Id", "customer_id" and " CUSTOMER-ID " are the same column.
The pre-filled mapping knows the names shop systems, mailing tools and spreadsheets
use; whatever it does not know becomes a custom attribute.

A mapping target is a field name (``email``), ``topic:<slug>`` (opt-in to a topic),
``topic_source:<slug>`` / ``topic_time:<slug>`` (that opt-in's consent evidence),
``attribute:<key>`` (a custom attribute) or ``ignore``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from audiences.csv_import.decoding import ImportFileError

IGNORE = "ignore"
KEY_FIELD = "external_id"
FIELDS: dict[str, str] = {
    "external_id": "External id (the key)",
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "language": "Language",
    "timezone": "Time zone",
    "country": "Country",
    "city": "City",
    "interests": "Interests",
    "push_opt_in": "Push opt-in",
    "consent_source": "Consent source",
    "consent_time": "Consent time",
    "device_token": "Device token",
    "platform": "Device platform",
}
PREFIXES = ("topic:", "topic_source:", "topic_time:", "attribute:")

_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": (
        "externalid",
        "customerid",
        "customer",
        "customerno",
        "customernumber",
        "userid",
        "user",
        "id",
        "uid",
        "contactid",
        "subscriberid",
        "memberid",
        "clientid",
        "accountid",
    ),
    "email": ("email", "emailaddress", "mail", "mailaddress", "emailadresse"),
    "first_name": ("firstname", "givenname", "forename", "fname", "first", "vorname", "prenom"),
    "last_name": ("lastname", "surname", "familyname", "lname", "last", "nachname", "nom"),
    "language": ("language", "lang", "locale", "languagecode", "preferredlanguage", "sprache"),
    "timezone": ("timezone", "tz", "tzname", "zeitzone"),
    "country": ("country", "countrycode", "countryiso", "countryisocode", "land", "pays"),
    "city": ("city", "town", "stadt", "ville"),
    "interests": ("interests", "interest", "tags", "tag", "categories"),
    "push_opt_in": (
        "pushoptin",
        "optin",
        "acceptsmarketing",
        "acceptspush",
        "marketingoptin",
        "pushconsent",
        "subscribed",
        "acceptsemailmarketing",
        "marketingconsent",
    ),
    "consent_source": ("consentsource", "optinsource", "source", "signupsource", "acceptsmarketingsource"),
    "consent_time": (
        "consenttime",
        "consentat",
        "consentdate",
        "consentedat",
        "optinat",
        "optintime",
        "optindate",
        "acceptsmarketingupdatedat",
        "subscribedat",
    ),
    "device_token": ("devicetoken", "token", "pushtoken", "fcmtoken", "registrationtoken"),
    "platform": ("platform", "deviceplatform", "os", "deviceos"),
}
_ALIAS_TO_FIELD = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_TOPIC_IN = ("", "topic", "optin", "optedin", "accepts", "subscribed")
_TOPIC_IN_SUFFIX = ("", "optin", "optedin", "subscribed", "consent")
_TOPIC_SOURCE_SUFFIX = ("source", "consentsource", "optinsource")
_TOPIC_TIME_SUFFIX = ("time", "at", "date", "consenttime", "consentat", "optinat", "optintime", "optedinat")


def normalize_header(header: str) -> str:
    """Case-, space- and punctuation-insensitive form: "E-Mail Address" → "emailaddress"."""
    return re.sub(r"[\W_]+", "", header.casefold())


def attribute_key(header: str) -> str:
    """The custom-attribute key a header becomes: "Loyalty Tier" → "loyalty_tier"."""
    key = re.sub(r"[^a-z0-9]+", "_", header.casefold()).strip("_")
    return key[:64].rstrip("_")


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    header: str
    target: str


def suggest_target(header: str, *, topic_slugs: Iterable[str]) -> str:
    """The pre-filled target for one header."""
    norm = normalize_header(header)
    if norm in _ALIAS_TO_FIELD:
        return _ALIAS_TO_FIELD[norm]
    for slug in topic_slugs:
        topic = normalize_header(slug)
        if not topic:
            continue
        if any(norm == f"{pre}{topic}{suf}" for pre in _TOPIC_IN for suf in _TOPIC_IN_SUFFIX):
            return f"topic:{slug}"
        if any(norm in (f"{topic}{suf}", f"topic{topic}{suf}") for suf in _TOPIC_SOURCE_SUFFIX):
            return f"topic_source:{slug}"
        if any(norm in (f"{topic}{suf}", f"topic{topic}{suf}") for suf in _TOPIC_TIME_SUFFIX):
            return f"topic_time:{slug}"
    key = attribute_key(header)
    return f"attribute:{key}" if key else IGNORE


def check_target(target: str, *, topic_slugs: Iterable[str]) -> str | None:
    """None when ``target`` is a valid mapping target, else what is wrong with it."""
    if target == IGNORE or target in FIELDS:
        return None
    prefix, _sep, name = target.partition(":")
    if f"{prefix}:" not in PREFIXES or not name:
        return (
            f"“{target}” is not a field. Use one of: {', '.join(FIELDS)}, topic:<topic slug>, "
            "topic_source:<slug>, topic_time:<slug>, attribute:<key> or ignore."
        )
    if prefix == "attribute":
        if attribute_key(name) != name:
            example = attribute_key(name) or "loyalty_tier"
            return (
                f"“{name}” is not a valid attribute key; use lower-case letters, digits and _ "
                f"(e.g. {example})."
            )
        return None
    if name not in set(topic_slugs):
        return f"There is no topic “{name}”. Topics: {', '.join(sorted(topic_slugs)) or '(none yet)'}."
    return None


def build_columns(
    headers: Sequence[str],
    *,
    overrides: Mapping[str, str],
    topic_slugs: Iterable[str],
) -> list[Column]:
    """Resolve every header to a target: explicit ``overrides`` first, then suggestions.

    ``overrides`` keys are matched like headers (normalized). Raises
    ``ImportFileError`` for an override naming no column or no valid target, two
    columns on one target, or no ``external_id`` column — all before any row is read.
    """
    slugs = list(topic_slugs)
    by_norm = {normalize_header(key): value.strip() for key, value in overrides.items()}
    norms = {normalize_header(header) for header in headers}
    unknown = [key for key in overrides if normalize_header(key) not in norms]
    if unknown:
        raise ImportFileError(
            f"The mapping names columns the file does not have: {', '.join(unknown)}. "
            f"The file's columns are: {', '.join(headers)}."
        )
    columns: list[Column] = []
    seen: dict[str, str] = {}
    problems: list[str] = []
    for index, header in enumerate(headers):
        norm = normalize_header(header)
        if not norm and header.strip() == "":
            target = by_norm.get(norm, IGNORE)
        else:
            target = by_norm.get(norm) or suggest_target(header, topic_slugs=slugs)
        problem = check_target(target, topic_slugs=slugs)
        if problem:
            problems.append(f"Column “{header}”: {problem}")
            continue
        if target != IGNORE:
            if target in seen:
                problems.append(
                    f"Columns “{seen[target]}” and “{header}” both map to {target}; "
                    "map one of them to another field or to ignore."
                )
            seen[target] = header
        columns.append(Column(index=index, header=header, target=target))
    if problems:
        raise ImportFileError(" ".join(problems))
    if KEY_FIELD not in seen:
        raise ImportFileError(
            "No column holds external_id, the key every row needs. "
            f"The file's columns are: {', '.join(h or '(blank)' for h in headers)}. "
            "Name one of them external_id (or Customer Id, User Id…), or map it to external_id."
        )
    return columns


def parse_mapping_option(values: Iterable[str]) -> dict[str, str]:
    """``["Customer Id=external_id", …]`` (the command's ``--map``) → ``{header: target}``."""
    mapping: dict[str, str] = {}
    for value in values:
        header, sep, target = value.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            raise ImportFileError(f'“{value}” is not a mapping; write it as "File column=field".')
        mapping[header.strip()] = target.strip()
    return mapping
