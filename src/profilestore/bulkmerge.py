"""The lean merge of a batch's chunk: its rows merged straight into the profiles as the store keeps
them (attributes as JSON text, rows by address), with no Profile objects and no call per
attribute. A chunk is mostly ids the store has seen, or none of it has, and this is the path
such a chunk takes; it is most of what a batch costs after the store's own work.

It merges exactly as the general merge (batches.merge_rows) does, by the same rules
(profiles.set_attributes), and decides only what it can decide so: a chunk that holds a row it
cannot, one whose profile has expired (the general merge deletes it and starts a new one) or one
that may come near the profile size cap, goes whole through the general merge instead, in the
same transaction. tests/test_bulkmerge.py runs random batches through both and compares the
stores, attribute by attribute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from .batchfile import Row
from .config import Settings
from .ids import new_tnt_ids
from .model import ORDER, Batch, FailedRow
from .profiles import batch_write_order, live_since
from .store.base import WriteTx


@dataclass
class RowsMerged:
    """What a chunk's good rows did, as the store's rows, not yet written (see WriteTx.write_profile_rows)."""

    successful: int = 0
    not_found: int = 0
    failures: list[FailedRow] = field(default_factory=list)  # none: a row that could fail goes the general way
    new: list[tuple] = field(default_factory=list)
    changed: list[tuple] = field(default_factory=list)

    def write(self, tx: WriteTx) -> None:
        tx.write_profile_rows(self.new, self.changed)


def merge_chunk(tx: WriteTx, batch: Batch, key: str, names_chars: int, rows: list, now: int,
                settings: Settings) -> RowsMerged | None:  # fmt: skip
    """The chunk's good rows merged into their stored profiles, or None if some row needs the
    general merge. names_chars: the characters of the header's attribute names, all together."""
    good = [r for r in rows if type(r) is Row]
    id_kind = "tntId" if key == "pcId" else "thirdPartyId"
    stored = tx.stored_profiles(batch.client, id_kind, {r.id for r in good})
    since = live_since(now, settings.lifetime_ms)
    if any(s.active_ms < since for s in stored.values()):  # expired: the general merge starts them anew
        return None
    # The size cap by a bound that needs no encoding: a character is at most 4 bytes, a row's
    # decoded values are no longer than its raw line, and the JSON text of attributes is longer
    # than their names and values. Past it, the general merge counts exactly.
    room = settings.max_profile_bytes // 4 if settings.max_profile_bytes else float("inf")
    order = batch_write_order(batch.seq)
    merged = RowsMerged()
    found: dict[object, list] = {}  # by address: [modified_ms, attributes JSON, address]
    created: dict[str, list] = {}  # by id: [modified_ms, attributes JSON]
    for row in good:
        profile = stored.get(row.id)
        if profile is not None:
            entry = found.get(profile.address) or found.setdefault(
                profile.address, [profile.modified_ms, profile.attributes, profile.address]
            )
        elif batch.version == 1:
            merged.not_found += 1
            continue
        else:
            entry = created.get(row.id) or created.setdefault(row.id, [now, "{}"])
        text = entry[1]
        if len(text) + len(row.raw) + names_chars > room:
            return None
        merged_text = accelerated(text, row.attributes, now, order) if accelerated else None
        if merged_text is None:
            merged_text = merge_attributes(text, row.attributes, now, order)
        if merged_text is not text:
            entry[0], entry[1] = now, merged_text
        merged.successful += 1
    client = batch.client
    if key == "pcId":
        merged.new = [(client, pc_id, now, now, None, None, e[1], now) for pc_id, e in created.items()]
    else:
        merged.new = [(client, tnt_id, now, now, third_party_id, None, e[1], now)
                      for tnt_id, (third_party_id, e) in zip(new_tnt_ids(len(created)), created.items())]  # fmt: skip
    merged.changed = [(e[0], e[1], now, e[2]) for e in found.values()]
    return merged


def merge_attributes(text: str, values: dict[str, str], now: int, order: int) -> str:
    """The values merged into attributes kept as JSON text, by set_attributes's rules (an empty
    value leaves its attribute alone; an attribute set by a later-accepted write stays); the
    same text object if nothing changed. _bulkmerge.merge_attributes does the same in C."""
    attributes = orjson.loads(text)
    changed = False
    for name, value in values.items():
        if value and (name not in attributes or attributes[name][ORDER] <= order):
            attributes[name] = [value, now, order]
            changed = True
    return orjson.dumps(attributes).decode() if changed else text


def _accelerator() -> Callable[[str, dict, int, int], str | None] | None:
    """The C merge, if it was built and PROFILESTORE_ACCELERATOR is not `off` (CI runs the suite
    both ways)."""
    if os.environ.get("PROFILESTORE_ACCELERATOR", "on") == "off":
        return None
    try:
        from ._bulkmerge import merge_attributes as merge_in_c
    except ImportError:
        return None
    return merge_in_c


accelerated = _accelerator()
