"""Profile export: a client's live profiles, page by page, as a batch file or as records.

Memory is bounded by a page (PAGE_SIZE profiles, read with Store.profile_rows) and, for a
batch file, by the set of distinct attribute names, however many profiles the client has. An
export is not a snapshot: each page is read as it stands when the export reaches it.

A batch file (`format=batch`) holds the profiles of one key (see KEYS): `thirdPartyId` those
that have a thirdPartyId, keyed by it; `pcId` those that have none, keyed by their tntId. The
two files together hold every exported profile once, and each can be posted back to v2's
batchUpdate as it is. The header lists every attribute name of the file's profiles in sorted
(code point) order, which the store finds in a pass of its own (Store.attribute_names); the
rows follow in tntId order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import orjson

from .batchfile import PREFIX
from .errors import BadRequest
from .model import VALUE, Profile
from .profiles import live_since
from .store.base import Store
from .store.rows import ACTIVE_MS, ATTRIBUTES, MODIFIED_MS, THIRD_PARTY_ID, TNT_ID, profile_from_row

PAGE_SIZE = 1000  # profiles read at a time
FORMATS = ("batch", "ndjson")
KEYS = ("thirdPartyId", "pcId")

# What a cell keeps as it is: what percent-decoding gives back unchanged. Everything else (`%`,
# `,`, `+`, CR, LF, space, `#`, non-ASCII as its UTF-8 bytes) is percent-encoded.
_SAFE = "-._~:/@!*'()"
_NEEDS_ENCODING = re.compile(r"[^A-Za-z0-9\-._~:/@!*'()]")


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the client's live profiles, those modified at or after since_ms (None:
    all), with only the attributes named (None: all; a profile with none of them is left out)."""

    client: str
    format: str = "batch"
    key: str = "thirdPartyId"
    since_ms: int | None = None
    names: frozenset[str] | None = None


def export_request(
    client: str, format: str, key: str, modified_since: str | None, attributes: str | None
) -> ExportRequest:
    """The request from its parameters as sent (modifiedSince ISO-8601, attributes comma-separated
    names); BadRequest naming the parameter that is wrong."""
    if format not in FORMATS:
        raise BadRequest(f"Unknown format {format!r}: use one of {', '.join(FORMATS)}")
    if key not in KEYS:
        raise BadRequest(f"Unknown key {key!r}: use one of {', '.join(KEYS)}")
    since_ms = None if modified_since is None else _epoch_ms(modified_since)
    names = None
    if attributes is not None:
        names = frozenset(name for name in attributes.split(",") if name)
        if not names:
            raise BadRequest("The attributes parameter names no attribute: give names separated by commas")
    return ExportRequest(client, format, key, since_ms, names)


def _epoch_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+"))  # a `+` of the offset sent unencoded
    except ValueError:
        raise BadRequest(f"modifiedSince {text!r} is not an ISO-8601 time, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def live_pages(
    store: Store, request: ExportRequest, now: int, lifetime_ms: int, page_size: int | None = None
) -> Iterator[list[Profile]]:
    """The client's profiles that the request selects, a page at a time (a page may be empty):
    live ones only, modified since, with only the attributes named."""
    for rows in _live_rows(store, request, now, lifetime_ms, page_size):
        profiles = [profile_from_row(row) for row in rows]
        if request.names is None:
            yield profiles
            continue
        for profile in profiles:
            profile.attributes = {n: a for n, a in profile.attributes.items() if n in request.names}
        yield [p for p in profiles if p.attributes]


def _live_rows(
    store: Store, request: ExportRequest, now: int, lifetime_ms: int, page_size: int | None = None,
    with_third_party_id: bool | None = None,
) -> Iterator[list[tuple]]:  # fmt: skip
    """The rows (store.rows.PROFILE_COLUMNS) of the client's live profiles modified since, a page at
    a time, with or without a thirdPartyId if told. Pages of PAGE_SIZE unless told otherwise."""
    page_size, after = page_size or PAGE_SIZE, None
    active_since, modified_since = live_since(now, lifetime_ms), request.since_ms or 0
    while True:
        page = store.profile_rows(request.client, after, page_size, with_third_party_id)
        yield [row for row in page if row[ACTIVE_MS] >= active_since and row[MODIFIED_MS] >= modified_since]
        if len(page) < page_size:
            return
        after = page[-1][TNT_ID]


def batch_file(
    store: Store, request: ExportRequest, now: int, lifetime_ms: int, page_size: int | None = None
) -> Iterator[bytes]:
    """The batch file of the request's key, a page of lines at a time: the header (the attribute
    names, which the store collects in one pass of its own), then one row per profile. Rows are
    made from the stored ones, with no Profile objects: a file may hold millions."""
    keyed_by_tnt_id = request.key == "pcId"
    seen = store.attribute_names(
        request.client, not keyed_by_tnt_id, live_since(now, lifetime_ms), request.since_ms or 0
    )
    names = sorted(seen if request.names is None else seen & request.names)
    yield (PREFIX.decode() + ",".join([request.key, *map(encode_cell, names)]) + "\n").encode()
    cells, key = _Cells(), TNT_ID if keyed_by_tnt_id else THIRD_PARTY_ID
    for rows in _live_rows(store, request, now, lifetime_ms, page_size, with_third_party_id=not keyed_by_tnt_id):
        lines = []
        for row in rows:
            attributes = orjson.loads(row[ATTRIBUTES])
            if request.names is None or any(n in attributes for n in request.names):
                lines.append(_line(row[key], attributes, names, cells))
        if lines:
            yield "".join(lines).encode()


def _line(visitor_id: str, attributes: dict, names: list[str], cells: _Cells) -> str:
    get, cell = attributes.get, cells.get
    row = [encode_cell(visitor_id)]
    # A stored value is never empty (an empty cell leaves its attribute alone), nor is its cell.
    row += [(cell(a[VALUE]) or cells.encode(a[VALUE])) if (a := get(n)) else "" for n in names]
    while row[-1] == "":  # empty trailing cells left out, as Target's files do (the id is never empty)
        row.pop()
    return ",".join(row) + "\n"


class _Cells(dict[str, str]):
    """The cells of short values, encoded once: most values of a client repeat (cities, tiers,
    categories), and encoding one with a non-ASCII letter costs 20 lookups of a cached one. At
    most CACHED values of up to CACHED_LENGTH characters: a few MB."""

    CACHED, CACHED_LENGTH = 16_384, 64

    def encode(self, value: str) -> str:
        cell = encode_cell(value)
        if len(value) <= self.CACHED_LENGTH and len(self) < self.CACHED:
            self[value] = cell
        return cell


def encode_cell(text: str) -> str:
    """A name or value percent-encoded so that batchfile.decode_cell gives it back."""
    return quote(text, safe=_SAFE) if _NEEDS_ENCODING.search(text) else text
