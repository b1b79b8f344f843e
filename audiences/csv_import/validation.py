"""Per-row validation and typed values (pure logic, no database).

:class:`RowValidator` is built once per file from the resolved columns and turns each
record into a :class:`ParsedRow` (only the non-blank cells: a blank cell never
overwrites) plus :class:`RowError` s that name the line, the column and what to do.
It is the hot loop of an import, so the per-column work is decided up front.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from audiences.csv_import.countries import ISO_3166_ALPHA2
from audiences.csv_import.decoding import Record
from audiences.csv_import.mapping import Column

TEXT, NUMBER, DATE, BOOLEAN = "text", "number", "date", "boolean"
ATTRIBUTE_TYPES = (TEXT, NUMBER, DATE, BOOLEAN)
MAX_LENGTHS = {
    "external_id": 255,
    "email": 254,
    "first_name": 150,
    "last_name": 150,
    "city": 120,
    "consent_source": 200,
    "device_token": 4096,
}
TRUE_WORDS = frozenset({"true", "yes", "y", "t", "on", "1", "x", "opted in", "subscribed"})
FALSE_WORDS = frozenset({"false", "no", "n", "f", "off", "0", "opted out", "unsubscribed"})
PLATFORMS = {
    "android": "android",
    "ios": "ios",
    "iphone": "ios",
    "ipad": "ios",
    "web": "web",
    "browser": "web",
}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEREST_SPLIT = re.compile(r"[;|]")
_COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    message: str


class ParsedRow:
    """The non-blank values of one valid row, parsed and normalized.

    A plain ``__slots__`` class rather than a dataclass: one is built per row, and
    the generated dataclass ``__init__`` with its default factories costs several
    times more than this one.
    """

    __slots__ = ("attributes", "consents", "device", "external_id", "fields", "line")
    _FIELDS = ("line", "external_id", "fields", "attributes", "consents", "device")

    def __init__(
        self,
        line: int,
        external_id: str,
        fields: dict[str, Any] | None = None,
        attributes: dict[str, Any] | None = None,
        consents: dict[str, tuple[bool, str, dt.datetime | None]] | None = None,
        device: tuple[str, str] | None = None,
    ) -> None:
        self.line = line
        self.external_id = external_id
        self.fields: dict[str, Any] = {} if fields is None else fields
        self.attributes: dict[str, Any] = {} if attributes is None else attributes
        # "push_opt_in" or a topic slug → (opted in, consent source, consent time or None)
        self.consents: dict[str, tuple[bool, str, dt.datetime | None]] = {} if consents is None else consents
        self.device = device

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParsedRow):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"ParsedRow({values})"


@cache
def _timezones() -> dict[str, str]:
    # zoneinfo.available_timezones() walks the tz database: compute it once.
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


def parse_bool(value: str) -> bool | None:
    word = value.strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def parse_number(value: str) -> int | float | None:
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def parse_date(value: str) -> str | None:
    text = value.strip()
    if not _ISO_DATE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text[:10]).isoformat() if len(text) == 10 else _datetime_date(text)
    except ValueError:
        return None


def _datetime_date(text: str) -> str | None:
    try:
        return dt.datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return None


def parse_datetime(value: str) -> dt.datetime | None:
    """ISO 8601 date or date-time; a time without an offset is taken as UTC."""
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def infer_type(values: Iterable[str]) -> str:
    """The narrowest attribute type every sample value parses as (``text`` if none)."""
    sample = [v.strip() for v in values if v.strip()]
    if not sample:
        return TEXT
    if all(parse_bool(v) is not None and not v.isdigit() for v in sample):
        return BOOLEAN
    if all(parse_number(v) is not None for v in sample):
        return NUMBER
    if all(parse_date(v) is not None for v in sample):
        return DATE
    return TEXT


TYPE_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    NUMBER: (parse_number, "is not a number; write it like 42 or 3.5 (a dot before decimals)"),
    DATE: (parse_date, "is not a date; write dates as YYYY-MM-DD, e.g. 2024-03-31"),
    BOOLEAN: (parse_bool, "is not yes/no; use true/false, yes/no or 1/0"),
}


@dataclass(frozen=True)
class ValidationContext:
    languages: Sequence[str]
    attribute_types: dict[str, str]
    now: dt.datetime


# A common-case email pattern (dot-atom local part, plain LDH domain) that is strictly
# narrower than Django's EmailValidator: addresses it accepts, Django accepts too, and
# anything else still goes through Django's validator. It saves the lazy-regex and IDN
# work of the full validator on the millions of ordinary addresses.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


class RowValidator:
    """Validates the records of one file against its resolved columns."""

    def __init__(self, *, columns: Sequence[Column], header_count: int, context: ValidationContext) -> None:
        self.columns = [c for c in columns if c.target != "ignore"]
        self.header_count = header_count
        self.context = context
        self.languages = frozenset(context.languages)
        self.header_of = {c.target: c.header for c in self.columns}
        # Codes repeat on every row: remember each distinct cell's outcome.
        self._memo: dict[tuple[str, str], tuple[Any, str]] = {}
        self._handlers = [
            (c.index, c.header, c.target, MAX_LENGTHS.get(c.target), self._handler(c.target))
            for c in self.columns
        ]

    def validate(self, record: Record) -> tuple[ParsedRow | None, list[RowError]]:
        line = record.line
        if record.error:
            return None, [RowError(line, "", record.error)]
        cells = record.cells
        if len(cells) != self.header_count and not (
            len(cells) > self.header_count and not any(c.strip() for c in cells[self.header_count :])
        ):
            return None, [
                RowError(
                    line,
                    "",
                    f"The row has {len(cells)} cells but the header has {self.header_count} columns. "
                    "Check for a missing or extra delimiter, or a delimiter inside an unquoted value.",
                )
            ]
        errors: list[RowError] = []
        row = ParsedRow(line=line, external_id="")
        extra: dict[str, Any] = {}  # opt-ins, their evidence, the device, by target
        for index, header, target, limit, handler in self._handlers:
            raw = cells[index]
            if not raw or raw.isspace():
                continue
            if limit is not None and len(raw) > limit:
                message = f"The value is {len(raw):,} characters long; the limit for {target} is {limit}."
            else:
                message = handler(row, target, raw, extra)
            if message:
                errors.append(RowError(line, header, message))
        if not row.external_id:
            key_header = self.header_of.get("external_id", "external_id")
            if not any(e.column == key_header for e in errors):
                errors.insert(0, RowError(line, key_header, "external_id is empty; every row needs its key."))
        if extra:
            self._consents(row, extra, errors)
            self._device(row, extra, errors)
        return (None, errors) if errors else (row, [])

    def _handler(self, target: str) -> Callable[[ParsedRow, str, str, dict[str, Any]], str]:
        if target in ("first_name", "last_name", "city"):
            return self._verbatim
        if target.startswith("attribute:"):
            return self._attribute_handler(target[10:])  # after "attribute:"
        if target == "push_opt_in" or target.startswith("topic:"):
            return self._opt_in
        if target.endswith("source") or target.startswith("topic_source:"):
            return self._stripped
        if target == "consent_time" or target.startswith("topic_time:"):
            return self._moment
        if target in ("device_token", "platform"):
            return self._stripped
        return {
            "external_id": self._external_id,
            "email": self._email,
            "interests": self._interests,
            "language": self._coded,
            "timezone": self._coded,
            "country": self._coded,
        }[target]

    def _verbatim(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        row.fields[target] = raw  # verbatim: formula-like cells are escaped on export
        return ""

    def _external_id(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        row.external_id = raw.strip()
        return ""

    def _stripped(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        extra[target] = raw.strip()
        return ""

    def _email(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        email = raw.strip()
        if not _PLAIN_EMAIL.fullmatch(email):
            try:
                validate_email(email)
            except ValidationError:
                return f"“{email}” is not a valid email address."
        row.fields["email"] = email
        return ""

    def _interests(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        # Stripped, non-blank, first occurrence kept in order; a plain split when the
        # cell uses only one of the two separators (the common case).
        if ";" not in raw:
            parts = raw.split("|")
        elif "|" not in raw:
            parts = raw.split(";")
        else:
            parts = _INTEREST_SPLIT.split(raw)
        interests: list[str] = []
        for part in parts:
            part = part.strip()
            if part and part not in interests:
                interests.append(part)
        if interests:
            row.fields["interests"] = interests
        return ""

    def _coded(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        key = (target, raw)
        outcome = self._memo.get(key)
        if outcome is None:
            outcome = self._memo[key] = self._code(target, raw.strip())
        value, message = outcome
        if not message:
            row.fields[target] = value
        return message

    def _code(self, target: str, text: str) -> tuple[Any, str]:
        if target == "language":
            code = text.replace("_", "-").lower()
            if code in self.languages:
                return code, ""
            base = code.split("-")[0]
            hint = f" Did you mean {base}?" if base in self.languages else ""
            offered = ", ".join(self.context.languages)
            return None, f"Language “{text}” is not offered; use one of: {offered}.{hint}"
        if target == "timezone":
            name = _timezones().get(text.casefold())
            if name is not None:
                return name, ""
            return (
                None,
                f"“{text}” is not an IANA time zone; use a name like Europe/Berlin or America/New_York.",
            )
        code = text.upper()
        if code in ISO_3166_ALPHA2:
            return code, ""
        hint = f" Use {_COUNTRY_HINTS[code]}." if code in _COUNTRY_HINTS else ""
        return None, f"“{text}” is not an ISO 3166-1 country code; use two letters like DE, ES or US.{hint}"

    def _opt_in(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        value = parse_bool(raw)
        if value is None:
            return f"“{raw.strip()}” is not yes/no; use true/false, yes/no or 1/0."
        extra[target] = value
        return ""

    def _moment(self, row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
        moment = parse_datetime(raw)
        if moment is None:
            return (
                f"“{raw.strip()}” is not a date and time; write it like 2024-03-31 14:30 (UTC) "
                "or 2024-03-31T14:30+02:00."
            )
        if moment > self.context.now + dt.timedelta(days=1):
            return f"The consent time {raw.strip()} is in the future."
        extra[target] = moment
        return ""

    def _attribute_handler(self, key: str) -> Callable[[ParsedRow, str, str, dict[str, Any]], str]:
        # The column's type is fixed for the whole file: pick its parser once.
        kind = self.context.attribute_types.get(key, TEXT)
        if kind == TEXT:

            def text(row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
                row.attributes[key] = raw
                return ""

            return text
        parser, problem = TYPE_PARSERS[kind]

        def typed(row: ParsedRow, target: str, raw: str, extra: dict[str, Any]) -> str:
            value = parser(raw)
            if value is None:
                return f"“{raw.strip()}” {problem} (attribute {key} is a {kind})."
            row.attributes[key] = value
            return ""

        return typed

    def _consents(self, row: ParsedRow, extra: dict[str, Any], errors: list[RowError]) -> None:
        for target, opted_in in extra.items():
            if target != "push_opt_in" and not target.startswith("topic:"):
                continue
            name = target.removeprefix("topic:")
            topic = target != "push_opt_in"
            source = (extra.get(f"topic_source:{name}") if topic else None) or extra.get("consent_source", "")
            moment = (extra.get(f"topic_time:{name}") if topic else None) or extra.get("consent_time")
            if opted_in and (not source or moment is None):
                missing = " and ".join(
                    what for what, absent in (("source", not source), ("time", moment is None)) if absent
                )
                errors.append(
                    RowError(
                        row.line,
                        self.header_of.get(target, target),
                        f"An opt-in needs its consent {missing}: fill the consent_source and consent_time "
                        f"columns (or {name}_consent_source / {name}_consent_time), e.g. "
                        "“checkout form” and 2024-03-31 14:30. Opt-ins without proof are not imported.",
                    )
                )
                continue
            row.consents[name] = (opted_in, source, moment)

    def _device(self, row: ParsedRow, extra: dict[str, Any], errors: list[RowError]) -> None:
        token, platform = extra.get("device_token", ""), extra.get("platform", "")
        if not token and not platform:
            return
        if not token or not platform:
            errors.append(
                RowError(
                    row.line,
                    self.header_of.get("platform" if token else "device_token", "device_token"),
                    "A device needs both its token and its platform (android, ios or web); "
                    "fill both or neither.",
                )
            )
            return
        code = PLATFORMS.get(platform.casefold())
        if code is None:
            errors.append(
                RowError(
                    row.line,
                    self.header_of["platform"],
                    f"“{platform}” is not a platform; use android, ios or web.",
                )
            )
            return
        row.device = (token, code)
