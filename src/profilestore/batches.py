"""The rules of bulk profile updates: accepting a batch, applying it, reporting on it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable
from urllib.parse import quote

from .batchfile import Header, Row, RowFailure, count_rows, parse_header, parse_rows, take_lines
from .clients import check_client, client_limit
from .config import Settings
from .errors import Rejected
from .ids import batch_id, now_ms, parse_batch_id
from .limits import check_daily_rows, utc_day_start
from .profiles import ProfileTooLarge, batch_write_order, find_profiles, new_profile, set_attributes
from .store.base import COMPLETE, RUNNING, STUCK, Batch, FailedRow, Profile, Store, WriteTx

TARGET_STATUS = {COMPLETE: "complete", STUCK: "stuck"}  # anything else is still "incomplete"
MAX_ATTEMPTS = 3


def target_status(batch: Batch) -> str:
    return TARGET_STATUS.get(batch.state, "incomplete")


def id_of(batch: Batch) -> str:
    return batch_id(batch.client, batch.accepted_ms, batch.seq)


@dataclass(frozen=True)
class Chunk:
    """Parsed rows of a batch, from one cursor position to the next."""

    rows: list[Row | RowFailure]
    start: int  # the batch's cursor before these rows
    end: int  # and after them
    end_line: int


@dataclass
class ChunkOutcome:
    successful: int = 0
    not_found: int = 0
    failures: list[FailedRow] = field(default_factory=list)


class BatchService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms):
        self.store = store
        self.settings = settings
        self.clock = clock

    # -- accepting -----------------------------------------------------------------------------

    def submit(self, client: str, version: int, payload: bytes) -> Batch:
        """Check the batch's structure and store it durably; nothing is stored if it is refused."""
        check_client(client)
        header = parse_header(payload)
        size = count_rows(payload, header)
        if size == 0:
            raise Rejected(400, "Batch is empty: the file has a header line but no data rows")
        if size > self.settings.max_batch_rows:
            raise Rejected(
                413, f"The batch has {size:,} data rows; the limit is {self.settings.max_batch_rows:,} rows per batch"
            )
        now = self.clock()
        batch = Batch(
            seq=0, client=client, version=version, accepted_ms=now, size=size,
            payload_bytes=len(payload), header=header.line, cursor=header.body_offset, cursor_line=2,
        )  # fmt: skip
        daily_rows = client_limit(self.settings, self.store.client_config(client), "daily_rows")

        def accept(tx: WriteTx) -> int:
            if daily_rows:  # counted inside the transaction, so two uploads cannot both slip under
                check_daily_rows(client, tx.rows_accepted_since(client, utc_day_start(now)), size, daily_rows, now)
            return tx.insert_batch(batch, payload)

        batch.seq = self.store.write(client, accept)
        return batch

    # -- finding -------------------------------------------------------------------------------

    def find(self, batch_id_text: str, client: str | None = None) -> Batch:
        """The batch with this id (and of this client, if given); 404 otherwise."""
        parsed = parse_batch_id(batch_id_text)
        batch = self.store.batch(parsed[2]) if parsed else None
        if batch is None or (batch.client, batch.accepted_ms) != parsed[:2] or client not in (None, batch.client):
            raise Rejected(404, f"No batch found with batchId={batch_id_text}" + (f" for client {client}" if client else ""))
        return batch

    def failed_rows_csv(self, batch: Batch) -> bytes:
        """The failed rows as a batch file: the header, each row as sent, and a comment column
        with its reason, which the parser ignores, so the file can be fixed and resubmitted."""
        width = len(batch.header.split(b","))
        lines = [batch.header + b",#reason"]
        for row in self.store.failed_rows(batch.seq):
            cells = row.raw.count(b",") + 1
            padding = b"," * (width - cells) if cells < width else b""
            reason = quote(f"line {row.line}: {row.reason}", safe=" ()':;/-_.!~*").encode()
            lines.append(row.raw + padding + b"," + reason)
        return b"\n".join(lines) + b"\n"

    # -- applying ------------------------------------------------------------------------------

    @staticmethod
    def read_chunk(header: Header, payload: bytes, cursor: int, cursor_line: int, max_rows: int) -> Chunk:
        """Up to max_rows rows from the cursor, parsed."""
        lines, end, end_line = take_lines(payload, cursor, cursor_line, max_rows)
        return Chunk(parse_rows(header, lines), cursor, end, end_line)

    def apply_chunk(
        self, batch: Batch, header: Header, chunk: Chunk, held_reason: str | None = None,
        meanwhile: Callable[[], object] = lambda: None,
    ) -> Batch:  # fmt: skip
        """Apply the chunk in one transaction that also advances the batch's cursor. If the
        cursor is not where the chunk starts (another worker moved it), nothing is applied and
        the batch as it is now is returned. `meanwhile` runs once the chunk's profiles are
        handed to the store, while it may still be writing them (see WriteTx)."""
        rows, cursor, cursor_line = chunk.rows, chunk.end, chunk.end_line
        now = self.clock()

        def apply(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current.cursor != chunk.start or current.state in (COMPLETE, STUCK):
                return current
            outcome = apply_rows(tx, current, header.key, rows, now, self.settings)
            meanwhile()
            failures = [FailedRow(r.line, r.id, r.reason, r.raw) for r in rows if isinstance(r, RowFailure)]
            failures += outcome.failures
            if failures:
                tx.add_failed_rows(current.seq, failures)
            done = cursor >= current.payload_bytes
            updated = replace(
                current,
                cursor=cursor, cursor_line=cursor_line, consumed=current.consumed + len(rows),
                successful=current.successful + outcome.successful, not_found=current.not_found + outcome.not_found,
                failed=current.failed + len(failures), attempts=0,
                state=COMPLETE if done else RUNNING, started_ms=current.started_ms or now,
                finished_ms=now if done else None, held_reason=None if done else held_reason,
            )  # fmt: skip
            if done:
                tx.drop_payload(current.seq)
            tx.update_batch(updated)
            return updated

        # The chunk can be redone from the batch's durable bytes: its commit need not wait for the disk.
        return self.store.write(batch.client, apply, durable=False)

    def record_failed_attempt(self, batch: Batch, reason: str, give_up: bool = False) -> Batch:
        """Count a failed attempt at the batch's next chunk; after MAX_ATTEMPTS, it is stuck."""

        def record(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            attempts = current.attempts + 1
            stuck = give_up or attempts >= MAX_ATTEMPTS
            updated = replace(
                current, attempts=attempts, state=STUCK if stuck else current.state,
                stuck_reason=reason if stuck else None, finished_ms=self.clock() if stuck else None,
            )  # fmt: skip
            tx.update_batch(updated)
            return updated

        return self.store.write(batch.client, record)


def apply_rows(
    tx: WriteTx, batch: Batch, key: str, rows: list[Row | RowFailure], now: int, settings: Settings
) -> ChunkOutcome:
    """Apply good rows in file order. v1 updates existing profiles only; v2 creates the missing
    ones. A row that would pass the profile size cap fails alone and changes nothing."""
    good = [r for r in rows if isinstance(r, Row)]
    id_kind = "tntId" if key == "pcId" else "thirdPartyId"
    profiles = find_profiles(tx, batch.client, id_kind, {r.id for r in good}, now, settings.lifetime_ms)
    order = batch_write_order(batch.seq)
    outcome = ChunkOutcome()
    changed: dict[str, Profile] = {}
    created: set[str] = set()
    for row in good:
        profile = profiles.get(row.id)
        if profile is None and batch.version == 1:
            outcome.not_found += 1
            continue
        target = profile or new_profile(batch.client, key, row.id, now)
        try:
            set_attributes(target, row.attributes, now, order, settings.max_profile_bytes)
        except ProfileTooLarge as e:
            outcome.failures.append(FailedRow(row.line, row.id, e.message, row.raw))
            continue
        if profile is None:
            created.add(target.tnt_id)
        profiles[row.id] = target
        target.active_ms = now
        changed[target.tnt_id] = target
        outcome.successful += 1
    tx.insert_profiles([p for tnt_id, p in changed.items() if tnt_id in created])
    tx.save_profiles([p for tnt_id, p in changed.items() if tnt_id not in created])
    return outcome
