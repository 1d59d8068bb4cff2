"""Identifiers in Target's shapes: tntIds, batchIds, and what makes a visitor id acceptable."""

from __future__ import annotations

import os
import re

from .times import now_ms

# The longest id of each kind, in characters. Target's tntIds are `<32 hex>.<edge cluster>_<n>`,
# some 40 characters (a pcId a client made up may be longer, but no id is without bound); its
# mbox3rdPartyId takes 256; an Experience Cloud ID (ECID) is 38 digits.
ID_MAX = {"tntId": 128, "thirdPartyId": 256, "marketingCloudVisitorId": 38}

# Target's tntId is `<32 hex>.<edge cluster>_<n>`; one cluster here, so a fixed one.
TNT_ID_SUFFIX = ".01_0"


def new_tnt_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits. Ids that grow with time
    are appended to the store's indexes instead of landing at random places in them, which
    doubled SQLite's insert rate for new profiles (bench/ingest)."""
    return new_tnt_ids(1)[0]


def new_tnt_ids(count: int) -> list[str]:
    """`count` new tntIds (see new_tnt_id), from one read of the system's random source."""
    random, prefix = os.urandom(10 * count).hex(), f"{now_ms():012x}"
    return [f"{prefix}{random[i : i + 20]}{TNT_ID_SUFFIX}" for i in range(0, 20 * count, 20)]


def batch_id(client: str, accepted_ms: int, seq: int) -> str:
    """A batch's batchId, as Target's clients know it (see parse_batch_id)."""
    return f"{client}-{accepted_ms}-{seq}"


# A batch id's numbers: ASCII digits (str.isdigit also takes "²"), at most 18 of them, so
# that both fit the stores' 64-bit integers.
_BATCH_NUMBER = re.compile(r"[0-9]{1,18}")


def parse_batch_id(value: str) -> tuple[str, int, int] | None:
    """(client, accepted_ms, seq) of a batch id, or None if it cannot be one of ours."""
    head, _, seq = value.rpartition("-")
    client, _, accepted = head.rpartition("-")
    if not (client and _BATCH_NUMBER.fullmatch(accepted) and _BATCH_NUMBER.fullmatch(seq)):
        return None
    return client, int(accepted), int(seq)


def visitor_id_problem(id_kind: str, value: str, name: str | None = None) -> str | None:
    """What makes an id of this kind (see model.ID_KINDS) unacceptable, or None; the
    message calls it `name` (the parameter or column it came in), by default its kind."""
    name, limit = name or id_kind, ID_MAX[id_kind]
    if len(value) > limit:
        return f"{name} is {len(value):,} characters, the limit is {limit}"
    if id_kind == "thirdPartyId" and ("+" in value or "/" in value):
        return f"{name} may not contain '+' or '/'"
    return None
