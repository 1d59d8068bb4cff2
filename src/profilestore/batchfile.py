"""The bulk batch file format: Target's `batch=` CSV, read the way Target documents it.

A file is a header line `batch=KEY,name,name,...` and data lines of comma-separated,
percent-encoded UTF-8 cells. Structural problems raise `BadRequest` (the whole request is
refused); problems of one data line come back as a `FailedRow` and fail that line only.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import contains, itemgetter
from typing import NamedTuple, cast
from urllib.parse import unquote_to_bytes

from .errors import BadRequest
from .ids import ID_MAX, visitor_id_problem
from .model import NUL, NUL_PROBLEM, FailedRow, storable

KEY_COLUMNS = ("pcId", "thirdPartyId")
BOM = b"\xef\xbb\xbf"
PREFIX = b"batch="
# A header cell written raw with `#` (a real name starting with `#` arrives as `%23`) is a
# comment column: the failed-rows CSV adds one for its reasons, so that file can be
# resubmitted as it is.
COMMENT_MARK = "#"

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BAD_PERCENT_BYTES = re.compile(_BAD_PERCENT.pattern.encode())


@dataclass(frozen=True)
class Header:
    key: str
    names: tuple[str | None, ...]  # attribute name per column after the key; None = comment
    line: bytes  # the header line as sent, for the failed-rows CSV
    body_offset: int  # where the first data line starts

    @property
    def width(self) -> int:
        return len(self.names) + 1

    @property
    def names_chars(self) -> int:
        """The characters of the attribute names, all together."""
        return sum(len(name) for name in self.names if name is not None)


class Row(NamedTuple):  # a tuple: a chunk makes thousands, and a dataclass takes twice as long
    line: int
    id: str
    attributes: dict[str, str]
    raw: bytes


def decode_cell(cell: str) -> str:
    """Percent-decode one cell as Target does (`+` is a space); ValueError if malformed."""
    if "%" not in cell:
        decoded = cell.replace("+", " ") if "+" in cell else cell
    elif _BAD_PERCENT.search(cell):
        raise ValueError("invalid percent-encoding")
    else:
        try:
            decoded = unquote_to_bytes(cell.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("percent-encoded bytes are not valid UTF-8") from None
    if not storable(decoded):
        raise ValueError(NUL_PROBLEM)
    return decoded


def parse_header(payload: bytes | bytearray) -> Header:
    start = len(BOM) if payload.startswith(BOM) else 0
    end = payload.find(b"\n", start)
    end = len(payload) if end < 0 else end
    line = bytes(payload[start:end].removesuffix(b"\r"))
    if not line.startswith(PREFIX):
        raise BadRequest("The batch must start with 'batch=' followed by the header, e.g. batch=pcId,attr1,attr2")
    if b"\r" in line:
        raise BadRequest("The file's lines end with CR alone (an old Mac text file): save it with LF or CRLF line ends")
    try:
        cells = line[len(PREFIX) :].decode("utf-8").split(",")
    except UnicodeDecodeError:
        raise BadRequest("The header line is not valid UTF-8") from None
    names = [_header_name(i, cell) for i, cell in enumerate(cells, start=1)]
    key = names[0]
    if key not in KEY_COLUMNS:
        raise BadRequest(f"Unknown key column {key!r}: the first header must be pcId or thirdPartyId")
    seen: set[str] = set()
    for name in names[1:]:
        if name in seen:
            raise BadRequest(f"Duplicate header name {name!r}: each attribute may appear once")
        if name is not None:
            seen.add(name)
    return Header(key=key, names=tuple(names[1:]), line=line, body_offset=min(end + 1, len(payload)))


def _header_name(column: int, cell: str) -> str | None:
    if column > 1 and cell.startswith(COMMENT_MARK):
        return None
    try:
        name = decode_cell(cell)
    except ValueError as e:
        raise BadRequest(f"Header column {column} ({cell!r}): {e}") from None
    if not name:
        raise BadRequest(f"Header column {column} is empty")
    return name


COUNT_WINDOW = 256 * 1024  # bytes of the file split into lines at a time, to count them


def count_rows(payload: bytes | bytearray, header: Header) -> int:
    """Data rows in the file: every line after the header that is not blank. Counted a window
    of whole lines at a time, never by splitting the file: 50 MB of short lines would be
    millions of objects at once, built while holding the interpreter's lock."""
    rows, start, size = 0, header.body_offset, len(payload)
    while start < size:
        end = payload.find(b"\n", min(start + COUNT_WINDOW, size))
        end = size if end < 0 else end + 1
        rows += _rows_in(payload[start:end])
        start = end
    return rows


def _rows_in(window: bytes | bytearray) -> int:
    """The lines of a window of whole lines that are not blank: its line ends, by a count in C,
    unless it holds blank lines."""
    if window.startswith((b"\n", b"\r\n")) or b"\n\n" in window or b"\n\r\n" in window:
        lines: Sequence[bytes | bytearray] = window.split(b"\n")
        return len(lines) - lines.count(b"") - lines.count(b"\r")
    last = window[window.rfind(b"\n") + 1 :]  # a last line with no line end counts unless blank
    return window.count(b"\n") + (last not in (b"", b"\r"))


LINE_GUESS = 128  # bytes a line, to cut the window take_lines splits first


def take_lines(payload: bytes, offset: int, line_no: int, limit: int) -> tuple[list[tuple[int, bytes]], int, int]:
    """Up to `limit` non-blank lines from `offset`: (line number, raw line), next offset, next line number."""
    size, window = len(payload), limit * LINE_GUESS
    while True:  # a window of the payload split in C, if it holds only plain lines (LF, none blank)
        block = payload[offset : offset + window]
        parts = block.split(b"\n", limit)
        if len(parts) > limit or offset + window >= size:
            break
        window *= 2
    end = offset + len(block) - len(parts[-1]) if len(parts) > limit else size
    plain = parts[:limit] if parts[-1] or len(parts) > limit else parts[:-1]
    if plain and b"" not in plain and not any(map(bytes.endswith, plain, repeat(b"\r"))):
        return list(zip(range(line_no, line_no + len(plain)), plain)), end, line_no + len(plain)
    return _take_lines_one_by_one(payload, offset, line_no, limit)


def _take_lines_one_by_one(
    payload: bytes, offset: int, line_no: int, limit: int
) -> tuple[list[tuple[int, bytes]], int, int]:
    lines: list[tuple[int, bytes]] = []
    size = len(payload)
    while offset < size and len(lines) < limit:
        end = payload.find(b"\n", offset)
        end = size if end < 0 else end
        raw = payload[offset:end]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw:
            lines.append((line_no, raw))
        offset = end + 1
        line_no += 1
    return lines, min(offset, size), line_no


def parse_rows(header: Header, lines: list[tuple[int, bytes]]) -> list[Row | FailedRow]:
    """parse_row of each (line number, raw line). Percent-decoding is most of the work, and
    binascii does it in C, 15 times faster than urllib's unquote: all the lines at once, or one
    by one if some line cannot be decoded. Lines that fail go through parse_row, which words
    the reason."""
    raws = [raw for _, raw in lines]
    together = _decode_together(raws)
    common = None if together is None else _parse_common(header, lines, raws, together)
    if common is not None:
        return common
    texts: Sequence[str | None] = together or [_decode_alone(raw) for raw in raws]
    key, names, width = header.key, header.names, header.width
    keep_all = None not in names  # no comment column: dict(zip()) builds the attributes in C
    all_names = cast("tuple[str, ...]", names)
    rows: list[Row | FailedRow] = []
    for (line_no, raw), text in zip(lines, texts):
        if text is None:
            rows.append(parse_row(header, line_no, raw))
            continue
        cells = text.split(",") if NUL not in text else [_unmark(cell) for cell in text.split(",")]
        if len(cells) > width or id_problem(key, cells[0]):
            rows.append(parse_row(header, line_no, raw))
        elif keep_all:
            rows.append(Row(line_no, cells[0], dict(zip(all_names, cells[1:])), raw))
        else:
            rows.append(Row(line_no, cells[0], {n: v for n, v in zip(names, cells[1:]) if n is not None}, raw))
    return rows


def _parse_common(
    header: Header, lines: list[tuple[int, bytes]], raws: list[bytes], texts: list[str]
) -> list[Row | FailedRow] | None:
    """The rows of a chunk whose lines are all good, with no comment column, checked and built by
    calls that loop in C; None for any other chunk, which parse_rows takes line by line. Most
    chunks are such chunks, and this halves their parsing."""
    if None in header.names or not lines:
        return None
    cells = [text.split(",") for text in texts]
    for i in compress(range(len(texts)), map(contains, texts, repeat(NUL))):
        cells[i] = [_unmark(cell) for cell in cells[i]]
    ids = list(map(itemgetter(0), cells))
    if max(map(len, cells)) > header.width or "" in ids or max(map(len, ids)) > ID_MAX[_ID_KIND[header.key]]:
        return None
    if header.key == "thirdPartyId" and _THIRD_PARTY_ID_REFUSES.search("".join(ids)):
        return None
    attributes = map(dict, map(zip, repeat(header.names), map(itemgetter(slice(1, None)), cells)))
    # tuple.__new__ makes each Row in C, where Row(...) calls the class's Python __new__.
    return list(map(tuple.__new__, repeat(Row), zip(map(itemgetter(0), lines), ids, attributes, raws)))


_ID_KIND = {"pcId": "tntId", "thirdPartyId": "thirdPartyId"}
_THIRD_PARTY_ID_REFUSES = re.compile("[+/]")  # see ids.visitor_id_problem


# Escapes of the characters that separate cells and lines stand in for them while lines are
# decoded together: NUL then a letter, since no decoded text holds NUL (see _decode_together).
_STRUCTURAL_ESCAPES = ((b"%2C", b"\x00c"), (b"%2c", b"\x00c"), (b"%0A", b"\x00n"), (b"%0a", b"\x00n"))


def _unmark(cell: str) -> str:
    return cell.replace("\x00c", ",").replace("\x00n", "\n") if NUL in cell else cell


def _decode_together(raws: list[bytes]) -> list[str] | None:
    """Each line percent-decoded (`+` is a space) as UTF-8 text, its cells still joined by `,`;
    None if any line holds NUL, a malformed escape or bytes that are not UTF-8. a2b_qp decodes
    quoted-printable, whose escapes are `=XX`: with every `=` escaped first and every `%` turned
    into `=`, it decodes percent-encoding exactly."""
    block = b"\n".join(raws)
    if b"\x00" in block or b"%00" in block or _BAD_PERCENT_BYTES.search(block) or not _utf8(block):
        return None
    for escape, mark in _STRUCTURAL_ESCAPES:
        block = block.replace(escape, mark)
    block = block.replace(b"+", b" ").replace(b"=", b"=3D").replace(b"%", b"=")
    try:
        return binascii.a2b_qp(block).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None


def _utf8(block: bytes) -> bool:
    """Whether the raw bytes are UTF-8, before decoding: a raw byte that is not must not pass
    by combining with an escape after it (raw \\xc3 then %A9 would decode to é)."""
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_alone(raw: bytes) -> str | None:
    decoded = _decode_together([raw])
    return decoded[0] if decoded else None


def parse_row(header: Header, line_no: int, raw: bytes) -> Row | FailedRow:
    """One line, cell by cell, so that a failure names the cell and its problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return FailedRow.kept(line_no, _id_of_undecodable(raw), "the line is not valid UTF-8", raw)
    cells = text.split(",")
    if len(cells) > header.width:
        return FailedRow.kept(
            line_no, _id_as_sent(cells[0]), f"{len(cells)} fields, but the header has {header.width}", raw
        )
    try:
        visitor_id = decode_cell(cells[0])
    except ValueError as e:
        return FailedRow.kept(line_no, _id_as_sent(cells[0]), f"{header.key} {_shown(cells[0])}: {e}", raw)
    problem = id_problem(header.key, visitor_id)
    if problem:
        return FailedRow.kept(line_no, visitor_id, problem, raw)
    attributes: dict[str, str] = {}
    for name, cell in zip(header.names, cells[1:]):
        if name is None:
            continue
        try:
            attributes[name] = decode_cell(cell)
        except ValueError as e:
            return FailedRow.kept(line_no, visitor_id, f"column {_shown(name)} ({_shown(cell)}): {e}", raw)
    return Row(line_no, visitor_id, attributes, raw)


def _id_as_sent(cell: str) -> str:
    """The id of a failed row: decoded if its cell decodes (whatever else failed), so that a
    privacy request for the visitor finds the row; else as sent, a raw NUL written as %00."""
    try:
        return decode_cell(cell)
    except ValueError:
        return cell.replace(NUL, "%00")


def _id_of_undecodable(raw: bytes) -> str:
    """The id of a line that is not UTF-8 as a whole: its id cell's, if that cell is."""
    try:
        return _id_as_sent(raw.split(b",", 1)[0].decode("utf-8"))
    except UnicodeDecodeError:
        return ""


def _shown(text: str, limit: int = 60) -> str:
    """A cell or name quoted in a reason: its beginning only, if it is long."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def id_problem(key: str, visitor_id: str) -> str | None:
    if not visitor_id:
        return f"empty {key}"
    return visitor_id_problem("thirdPartyId" if key == "thirdPartyId" else "tntId", visitor_id, key)
