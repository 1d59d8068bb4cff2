"""How every store lays profiles and batches out in rows: the same columns, and a profile's
attributes as one JSON object {name: [value, modified_ms, order]}, so both stores hold the same
data and read it back the same way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

import orjson

from ..model import Batch, Profile

BATCH_FIELDS = [f.name for f in fields(Batch) if f.name != "seq"]  # seq is the store's to number
PROFILE_COLUMNS = "client, tnt_id, created_ms, modified_ms, third_party_id, mcvid, attributes, active_ms"
# Where each is in a row of them.
TNT_ID, MODIFIED_MS, THIRD_PARTY_ID, ATTRIBUTES, ACTIVE_MS = 1, 3, 4, 6, 7
# Store.profile_rows's with_third_party_id as a condition of the query, one the planner can see,
# so that the profiles without one are read through their own index
# (profiles_without_third_party_id).
WITH_THIRD_PARTY_ID = {None: "", True: "AND third_party_id IS NOT NULL", False: "AND third_party_id IS NULL"}


def batch_values(batch: Batch) -> tuple:
    """The batch's BATCH_FIELDS, in order."""
    return tuple(getattr(batch, name) for name in BATCH_FIELDS)


def profile_values(p: Profile) -> tuple:
    """The profile's PROFILE_COLUMNS, in order."""
    attributes = orjson.dumps(p.attributes).decode()
    return p.client, p.tnt_id, p.created_ms, p.modified_ms, p.third_party_id, p.mcvid, attributes, p.active_ms


def profile_from_row(row: tuple) -> Profile:
    """A row of PROFILE_COLUMNS as a profile."""
    client, tnt_id, created_ms, modified_ms, third_party_id, mcvid, attributes, active_ms = row
    stored = orjson.loads(attributes)
    return Profile(client, tnt_id, created_ms, modified_ms, third_party_id, mcvid, stored, active_ms)


def profiles_by_asked(rows: Iterable) -> dict[str, Profile]:
    """Rows of (id asked for, PROFILE_COLUMNS...) as profiles keyed by the id asked for; ids
    that lead to the same profile share one Profile object."""
    found: dict[str, Profile] = {}
    by_tnt_id: dict[str, Profile] = {}
    for asked, client, tnt_id, created_ms, modified_ms, third_party_id, mcvid, attributes, active_ms in rows:
        if tnt_id not in by_tnt_id:
            stored = orjson.loads(attributes)
            profile = Profile(client, tnt_id, created_ms, modified_ms, third_party_id, mcvid, stored, active_ms)
            by_tnt_id[tnt_id] = profile
        found[asked] = by_tnt_id[tnt_id]
    return found
