"""Identifiers and timestamps in Target's shapes."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

THIRD_PARTY_ID_MAX = 256  # Target's limit for mbox3rdPartyId

# Target's tntId is `<32 hex>.<edge cluster>_<n>`; one cluster here, so a fixed one.
TNT_ID_SUFFIX = ".01_0"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_tnt_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits. Ids that grow with time
    are appended to the store's indexes instead of landing at random places in them, which
    doubled SQLite's insert rate for new profiles (bench/ingest)."""
    return f"{now_ms():012x}{os.urandom(10).hex()}{TNT_ID_SUFFIX}"


def iso_ms(epoch_ms: int | None) -> str | None:
    """ISO-8601 with milliseconds and an offset, as Target writes modifiedAt."""
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def batch_id(client: str, accepted_ms: int, seq: int) -> str:
    return f"{client}-{accepted_ms}-{seq}"


def parse_batch_id(value: str) -> tuple[str, int, int] | None:
    """(client, accepted_ms, seq) of a batch id, or None if it cannot be one of ours."""
    head, _, seq = value.rpartition("-")
    client, _, accepted = head.rpartition("-")
    if not (client and accepted.isdigit() and seq.isdigit()):
        return None
    return client, int(accepted), int(seq)


def third_party_id_problem(value: str) -> str | None:
    """What makes a thirdPartyId unacceptable to Target, or None."""
    if len(value) > THIRD_PARTY_ID_MAX:
        return f"thirdPartyId is {len(value)} characters, the limit is {THIRD_PARTY_ID_MAX}"
    if "+" in value or "/" in value:
        return "thirdPartyId may not contain '+' or '/'"
    return None
