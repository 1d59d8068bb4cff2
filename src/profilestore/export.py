"""Profile export: a client's live profiles, page by page, as a batch file or as records.

Memory is bounded by a page (PAGE_SIZE profiles, read with Store.profiles_page) and, for a
batch file, by the set of distinct attribute names, however many profiles the client has. An
export is not a snapshot: each page is read as it stands when the export reaches it.

A batch file (`format=batch`) holds the profiles of one key (see KEYS): `thirdPartyId` those
that have a thirdPartyId, keyed by it; `pcId` those that have none, keyed by their tntId. The
two files together hold every exported profile once, and each can be posted back to v2's
batchUpdate as it is. The header lists every attribute name of the file's profiles in sorted
(code point) order, found by a first pass over the pages; the rows follow in tntId order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from .batchfile import PREFIX
from .errors import BadRequest
from .model import VALUE, Profile
from .profiles import is_expired
from .store.base import Store

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
    store: Store, request: ExportRequest, now: int, lifetime_ms: int, page_size: int | None = None,
    with_third_party_id: bool | None = None,
) -> Iterator[list[Profile]]:  # fmt: skip
    """The client's profiles that the request selects, a page at a time (a page may be empty):
    live ones only, modified since, with only the attributes named, and with or without a
    thirdPartyId if told. Pages of PAGE_SIZE unless told otherwise."""
    page_size = page_size or PAGE_SIZE
    after = None
    while True:
        page = store.profiles_page(request.client, after, page_size, with_third_party_id)
        yield [p for p in page if _selected(p, request, now, lifetime_ms)]
        if len(page) < page_size:
            return
        after = page[-1].tnt_id


def _selected(profile: Profile, request: ExportRequest, now: int, lifetime_ms: int) -> bool:
    if is_expired(profile, now, lifetime_ms):
        return False
    if request.since_ms is not None and profile.modified_ms < request.since_ms:
        return False
    if request.names is not None:
        profile.attributes = {n: a for n, a in profile.attributes.items() if n in request.names}
        return bool(profile.attributes)
    return True


def batch_file(
    store: Store, request: ExportRequest, now: int, lifetime_ms: int, page_size: int | None = None
) -> Iterator[bytes]:
    """The batch file of the request's key, a page of lines at a time: the header (after a first
    pass that collects the attribute names), then one row per profile."""
    keyed_by_tnt_id = request.key == "pcId"

    def of_key() -> Iterator[list[Profile]]:
        return live_pages(store, request, now, lifetime_ms, page_size, with_third_party_id=not keyed_by_tnt_id)

    seen: set[str] = set()
    for page in of_key():
        for profile in page:
            seen.update(profile.attributes)
    names = sorted(seen)
    yield (PREFIX.decode() + ",".join([request.key, *map(encode_cell, names)]) + "\n").encode()
    encode = _CachedEncoder()
    for page in of_key():
        if page:
            yield "".join(_row(p, keyed_by_tnt_id, names, encode) for p in page).encode()


def _row(profile: Profile, keyed_by_tnt_id: bool, names: list[str], encode: _CachedEncoder) -> str:
    attributes = profile.attributes
    cells = [encode_cell(profile.tnt_id if keyed_by_tnt_id else profile.third_party_id or "")]
    cells += [encode(attributes[n][VALUE]) if n in attributes else "" for n in names]
    while cells[-1] == "":  # empty trailing cells left out, as Target's files do (the id is never empty)
        cells.pop()
    return ",".join(cells) + "\n"


class _CachedEncoder(dict[str, str]):
    """encode_cell, remembering the cells of short values: most values of a client repeat
    (cities, tiers, categories), and encoding one with a non-ASCII letter costs 20 lookups of
    a cached one. At most CACHED values of up to CACHED_LENGTH characters: a few MB."""

    CACHED, CACHED_LENGTH = 16_384, 64

    def __call__(self, value: str) -> str:
        cell = self.get(value)
        if cell is None:
            cell = encode_cell(value)
            if len(value) <= self.CACHED_LENGTH and len(self) < self.CACHED:
                self[value] = cell
        return cell


def encode_cell(text: str) -> str:
    """A name or value percent-encoded so that batchfile.decode_cell gives it back."""
    return quote(text, safe=_SAFE) if _NEEDS_ENCODING.search(text) else text
