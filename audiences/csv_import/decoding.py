"""From bytes to records: size limit, encoding, delimiter, CSV records (pure logic).

Everything here streams: the encoding check reads the file in 1 MiB chunks with an
incremental decoder, and :func:`read_records` yields one record at a time, so memory
does not grow with the file. Problems with the file as a whole raise
:class:`ImportFileError` before any row is read; problems with one record are yielded
as a :class:`Record` with an ``error`` so the importer can report the line and go on.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from notifyhub.exceptions import ApplicationError

CHUNK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
# A cell longer than this is an error whatever the column ("oversized field"); the
# csv module's own limit (128 KiB) also stops a runaway unterminated quote.
MAX_CELL_CHARS = 10_000
# Share of bytes ≥ 0x80 above which a file that is not UTF-8 is not Western text
# (Windows-1252) but something like Cyrillic or CJK that would decode as gibberish.
_MAX_HIGH_BYTE_SHARE = 0.2

ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with byte-order mark",
    "utf-16": "UTF-16 with byte-order mark",
    "cp1252": "Windows-1252 (Western European)",
}
_SAVE_AS_UTF8 = "Save it as “CSV UTF-8” (Excel: File → Save As; Google Sheets: File → Download → CSV)."


class ImportFileError(ApplicationError):
    """The file as a whole cannot be imported (too big, unknown encoding, no key column…)."""


class Record(NamedTuple):
    """One CSV record: its first physical line, its cells, or why it could not be read.

    A named tuple, not a dataclass: one is made per row, and a tuple is the cheapest
    immutable record to build.
    """

    line: int
    cells: list[str]
    error: str = ""


def check_size(size: int, *, limit: int) -> None:
    """Refuse a file over ``limit`` bytes before reading a byte of it."""
    if size > limit:
        raise ImportFileError(
            f"The file is {_mib(size)}; the import limit is {_mib(limit)}. "
            "Split it into smaller files (each with the header row) and import them one by one."
        )


def _mib(size: int) -> str:
    if size < 1 << 20:
        return f"{size / 1024:,.1f} KB"
    return f"{size / (1 << 20):,.1f} MB"


def detect_encoding(stream: BinaryIO) -> str:
    """The Python codec to read ``stream`` with, or ``ImportFileError`` naming what it is.

    Reads the whole stream (in chunks) and rewinds it: a Windows-1252 byte on line
    90,000 must not surface as a decoding crash halfway through an import.
    """
    stream.seek(0)
    head = stream.read(4096)
    stream.seek(0)
    if head.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        raise ImportFileError(
            f"The file is encoded as UTF-32, which the importer does not read. {_SAVE_AS_UTF8}"
        )
    if head.startswith(b"PK\x03\x04"):
        raise ImportFileError(
            f"This is an Excel workbook (.xlsx) or a ZIP archive, not a CSV file. {_SAVE_AS_UTF8}"
        )
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError(f"This is an old Excel workbook (.xls), not a CSV file. {_SAVE_AS_UTF8}")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        _check_decodes(stream, "utf-16", "UTF-16 (it starts with a UTF-16 byte-order mark)")
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        _check_decodes(stream, "utf-8-sig", "UTF-8 (it starts with a UTF-8 byte-order mark)")
        return "utf-8-sig"
    if len(head) >= 8 and head.count(0) > len(head) * 0.3:
        raise ImportFileError(
            "The file looks like UTF-16 without a byte-order mark (every other byte is zero), "
            f"which cannot be read reliably. {_SAVE_AS_UTF8}"
        )
    if _decodes(stream, "utf-8") is None:
        return "utf-8"
    problem = _decodes(stream, "cp1252")
    if problem is not None:
        raise ImportFileError(
            f"The file is neither UTF-8 nor Windows-1252 ({problem}); its encoding could not be "
            f"recognised. {_SAVE_AS_UTF8}"
        )
    high, total = _high_byte_share(stream)
    if total and high / total > _MAX_HIGH_BYTE_SHARE:
        raise ImportFileError(
            "The file is not UTF-8, and most of its text is in bytes that Windows-1252 would turn "
            "into gibberish: it looks like a non-Western legacy encoding (Cyrillic, Greek, Asian…). "
            + _SAVE_AS_UTF8
        )
    return "cp1252"


def _decodes(stream: BinaryIO, encoding: str) -> str | None:
    """None when the whole stream decodes, else where it first fails."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    stream.seek(0)
    try:
        while chunk := stream.read(CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                position = offset + exc.start
                return f"byte 0x{chunk[exc.start]:02X} at position {position:,} is not valid {encoding}"
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"the file ends in the middle of a {encoding} character"
        return None
    finally:
        stream.seek(0)


def _check_decodes(stream: BinaryIO, encoding: str, described: str) -> None:
    problem = _decodes(stream, encoding)
    if problem is not None:
        raise ImportFileError(f"The file claims to be {described}, but {problem}. {_SAVE_AS_UTF8}")


def _high_byte_share(stream: BinaryIO) -> tuple[int, int]:
    high = total = 0
    stream.seek(0)
    while chunk := stream.read(CHUNK_BYTES):
        total += len(chunk)
        high += len(chunk) - len(chunk.translate(None, bytes(range(0x80, 0x100))))
    stream.seek(0)
    return high, total


def detect_delimiter(sample: str) -> str:
    """The delimiter among ``,`` ``;`` and tab that splits the sample most consistently.

    ``sample`` is the start of the decoded file. Score: the header splits into more
    than one column, then the share of the following lines with the header's column
    count, then the number of columns. A one-column file is read with commas.
    """
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut off mid-record
    lines = lines[:50]
    best, best_score = ",", (False, 0.0, 0)
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        rows = [row for row in rows if row]
        if not rows:
            continue
        width = len(rows[0])
        rest = rows[1:]
        consistent = sum(len(row) == width for row in rest) / len(rest) if rest else 1.0
        score = (width > 1, consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def open_text(stream: BinaryIO, encoding: str) -> io.TextIOWrapper:
    """A text view of ``stream`` for the csv module (``newline=""`` keeps CRs in quoted cells)."""
    stream.seek(0)
    return io.TextIOWrapper(stream, encoding=encoding, newline="")  # type: ignore[type-var]


def read_records(text: io.TextIOBase, *, delimiter: str) -> Iterator[Record]:
    """Yield every non-blank record with its first line number; the header is line 1.

    Records the csv module cannot read (unterminated quote, stray quote, a field over
    its size limit), cells with NUL characters and oversized cells come back with an
    ``error`` instead of being dropped, so the importer can name the line.
    """
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(line=line, cells=[], error=_csv_error_message(str(exc)))
            continue
        joined = "".join(cells)
        # Blank iff every cell is empty or whitespace, i.e. iff the joined text is.
        if not joined or joined.isspace():
            continue
        # Fast path (nearly every row): no NUL and too short in total for any one
        # cell to be oversized; otherwise find the offending cell below.
        if len(joined) <= MAX_CELL_CHARS and "\x00" not in joined:
            yield Record(line=line, cells=cells)
            continue
        for cell in cells:
            if "\x00" in cell:
                yield Record(
                    line=line,
                    cells=cells,
                    error="The row contains a NUL character (a zero byte), which a text file should not "
                    "have; the file may be damaged or was saved in another encoding. Remove it.",
                )
                break
            if len(cell) > MAX_CELL_CHARS:
                yield Record(
                    line=line,
                    cells=cells,
                    error=f"A cell is {len(cell):,} characters long; the limit is {MAX_CELL_CHARS:,}. "
                    "Shorten it, or check for a quote that is opened and never closed.",
                )
                break
        else:
            yield Record(line=line, cells=cells)


def _csv_error_message(raw: str) -> str:
    if "unexpected end of data" in raw or "EOF" in raw:
        return (
            "A quoted value starts here and is never closed (unterminated quote), so the rest of the "
            'file was read as one cell. Close the quote, or double quotes inside values ("").'
        )
    if "field larger than field limit" in raw:
        return (
            f"A cell is too large (over {csv.field_size_limit():,} characters) — usually a quote that "
            "is opened and never closed. Check the quotes on this line."
        )
    if "expected after" in raw:
        return (
            'A quote appears inside a value without being doubled, e.g. a"b. Write quotes inside '
            'quoted values as "" or remove them.'
        )
    return f"The line cannot be read as CSV ({raw}). Check its quotes and delimiters."


def read_sample(stream: BinaryIO, encoding: str, *, size: int = 64 * 1024) -> str:
    """The decoded start of the file (for delimiter detection); rewinds the stream."""
    stream.seek(0)
    sample = codecs.getincrementaldecoder(encoding)(errors="replace").decode(stream.read(size))
    stream.seek(0)
    return sample
