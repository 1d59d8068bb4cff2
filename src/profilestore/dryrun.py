"""Dry runs: what a batch file would do if it were submitted now, found without storing or
changing anything.

The file is checked as batchUpdate checks it (its structure, its size, the client's daily
quota), then read chunk by chunk as the worker reads it, and each chunk's rows are merged into
the stored profiles by the same rules (batches.merge_rows) in a write transaction that is always
rolled back. So a row fails for the same reason it would fail when applied, and v1 rows of
unknown profiles are counted as not found. Only the chunks before it are not seen by a chunk,
since nothing is written: an id repeated in a later chunk is checked against the stored
profile, not against what its earlier row would have made of it (a v2 profile it would create
is counted once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .batches import BatchService, Merged, merge_rows, read_chunk
from .batchfile import Header
from .clients import check_client, client_limit
from .errors import Refused
from .limits import check_daily_rows
from .model import Batch, FailedRow
from .store.base import Store, WriteTx
from .times import utc_day_start

LISTED_FAILURES = 1_000  # failed rows a dry run lists; it counts all of them


@dataclass
class DryRun:
    """What the batch would do: refused whole, or each row's outcome."""

    size: int = 0  # data rows
    refusal: Refused | None = None  # why batchUpdate would refuse it whole, if it would
    successful: int = 0
    created: int = 0  # v2: profiles it would create
    not_found: int = 0  # v1: rows of profiles that do not exist
    failed: int = 0
    failed_rows: list[FailedRow] = field(default_factory=list)  # the first LISTED_FAILURES


class _Undone(Exception):
    """Ends a dry run's transaction, so that it is rolled back, with what the chunk did."""

    def __init__(self, merged: Merged):
        super().__init__("dry run")
        self.merged = merged


def dry_run(store: Store, batches: BatchService, clock: Callable[[], int], client: str, version: int,
            payload: bytes | bytearray) -> DryRun:  # fmt: skip
    """What submitting the payload as a batch of this version would do now (see the module)."""
    check_client(client)
    try:
        header, size = batches.check_structure(payload)
        _check_quota(store, batches, clock, client, size)
    except Refused as refusal:
        return DryRun(refusal=refusal)
    result, created_ids = DryRun(size=size), set[str]()
    data = bytes(payload)  # as the worker reads it back from the store: rows of bytes, not bytearray
    cursor, line = header.body_offset, 2
    while cursor < len(data):
        chunk = read_chunk(header, data, cursor, line, batches.settings.chunk_rows)
        merged = _merge_undone(store, batches, clock, client, version, header, chunk.rows)
        _count(result, chunk.rows, merged, created_ids)
        cursor, line = chunk.end, chunk.end_line
    return result


def _check_quota(store: Store, batches: BatchService, clock: Callable[[], int], client: str, size: int) -> None:
    daily_rows = client_limit(batches.settings, store.client_config(client), "daily_rows")
    if daily_rows:
        now = clock()
        used = store.write(client, lambda tx: tx.rows_accepted_since(client, utc_day_start(now)))
        check_daily_rows(client, used, size, daily_rows, now)


def _merge_undone(store: Store, batches: BatchService, clock: Callable[[], int], client: str, version: int,
                  header: Header, rows: list) -> Merged:  # fmt: skip
    """The chunk's rows merged as the worker would merge them, in a transaction rolled back."""
    now = clock()

    def merge(tx: WriteTx) -> None:
        # The seq the batch would get: the write order of its attributes against later writes.
        would_be = Batch(tx.last_batch_seq() + 1, client, version, now, 0, 0, header.line, 0, 2)
        raise _Undone(merge_rows(tx, would_be, header.key, rows, now, batches.settings))

    try:
        store.write(client, merge, durable=False)
    except _Undone as undone:
        return undone.merged
    raise AssertionError("a dry run's transaction ended without its result")  # merge() always raises


def _count(result: DryRun, rows: list, merged: Merged, created_ids: set[str]) -> None:
    failures = [r for r in rows if isinstance(r, FailedRow)] + merged.failures
    failures.sort(key=lambda r: r.line)
    result.failed += len(failures)
    result.failed_rows += failures[: LISTED_FAILURES - len(result.failed_rows)]
    result.not_found += merged.not_found
    result.successful += merged.successful
    for profile in merged.created:
        visitor_id = profile.third_party_id or profile.tnt_id
        if visitor_id not in created_ids:
            created_ids.add(visitor_id)
            result.created += 1
