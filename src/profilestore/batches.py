"""The rules of bulk profile updates: accepting a batch, applying it, reporting on it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable
from urllib.parse import quote

from .batchfile import Header, Row, RowFailure, count_rows, parse_header, parse_row, take_lines
from .clients import check_client
from .config import Settings
from .errors import Rejected
from .ids import batch_id, now_ms, parse_batch_id
from .profiles import batch_write_order, new_profile, set_attributes
from .store.base import COMPLETE, RUNNING, STUCK, Batch, FailedRow, Profile, Store, WriteTx

TARGET_STATUS = {COMPLETE: "complete", STUCK: "stuck"}  # anything else is still "incomplete"
MAX_ATTEMPTS = 3


def target_status(batch: Batch) -> str:
    return TARGET_STATUS.get(batch.state, "incomplete")


def id_of(batch: Batch) -> str:
    return batch_id(batch.client, batch.accepted_ms, batch.seq)


@dataclass
class ChunkOutcome:
    successful: int = 0
    not_found: int = 0


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
        batch = Batch(
            seq=0, client=client, version=version, accepted_ms=self.clock(), size=size,
            payload_bytes=len(payload), header=header.line, cursor=header.body_offset, cursor_line=2,
        )  # fmt: skip
        batch.seq = self.store.write(lambda tx: tx.insert_batch(batch, payload))
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

    def apply_chunk(self, batch: Batch, header: Header, payload: bytes) -> Batch:
        """Apply the next chunk of rows in one transaction that also advances the cursor.
        If another worker moved the cursor first, nothing is applied and its batch is returned."""
        lines, cursor, cursor_line = take_lines(payload, batch.cursor, batch.cursor_line, self.settings.chunk_rows)
        rows = [parse_row(header, line_no, raw) for line_no, raw in lines]
        now = self.clock()

        def apply(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current.cursor != batch.cursor or current.state in (COMPLETE, STUCK):
                return current
            outcome = apply_rows(tx, current, header.key, rows, now)
            failures = [FailedRow(r.line, r.id, r.reason, r.raw) for r in rows if isinstance(r, RowFailure)]
            tx.add_failed_rows(current.seq, failures)
            done = cursor >= current.payload_bytes
            updated = replace(
                current,
                cursor=cursor, cursor_line=cursor_line, consumed=current.consumed + len(rows),
                successful=current.successful + outcome.successful, not_found=current.not_found + outcome.not_found,
                failed=current.failed + len(failures), attempts=0,
                state=COMPLETE if done else RUNNING, started_ms=current.started_ms or now,
                finished_ms=now if done else None,
            )  # fmt: skip
            if done:
                tx.drop_payload(current.seq)
            tx.update_batch(updated)
            return updated

        return self.store.write(apply)

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

        return self.store.write(record)


def apply_rows(tx: WriteTx, batch: Batch, key: str, rows: list[Row | RowFailure], now: int) -> ChunkOutcome:
    """Apply good rows in file order. v1 updates existing profiles only; v2 creates the missing ones."""
    good = [r for r in rows if isinstance(r, Row)]
    profiles = tx.profiles_by(batch.client, "tntId" if key == "pcId" else "thirdPartyId", {r.id for r in good})
    order = batch_write_order(batch.seq)
    outcome = ChunkOutcome()
    changed: dict[str, Profile] = {}
    for row in good:
        profile = profiles.get(row.id)
        if profile is None:
            if batch.version == 1:
                outcome.not_found += 1
                continue
            profile = profiles[row.id] = new_profile(batch.client, key, row.id, now)
            changed[profile.tnt_id] = profile
        if set_attributes(profile, row.attributes, now, order):
            changed[profile.tnt_id] = profile
        outcome.successful += 1
    tx.save_profiles(changed.values())
    return outcome
