"""The rules of bulk profile updates: accepting a batch, applying it, reporting on it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator
from urllib.parse import quote

from .batchfile import Header, Row, RowFailure, count_rows, parse_header, parse_rows, take_lines
from .clients import check_client, client_limit
from .config import Settings
from .errors import Rejected
from .ids import HOUR_MS, batch_id, now_ms, parse_batch_id
from .limits import check_daily_rows, utc_day_start
from .profiles import ProfileTooLarge, batch_write_order, find_profiles, new_profile, set_attributes
from .store.base import COMPLETE, RUNNING, STUCK, Batch, FailedRow, Profile, Store, StoreUnavailable, WriteTx

TARGET_STATUS = {COMPLETE: "complete", STUCK: "stuck"}  # anything else is still "incomplete"
MAX_ATTEMPTS = 3  # failed attempts in a row, for reasons that do not pass, before a batch is stuck
# Attempts in a row that began and never ended, neither with a chunk committed nor with a
# failure recorded: the worker was killed, ran out of memory or froze on them. A batch that
# does that to every worker must not hold its client's queue (on SQLite, everyone's) for ever.
MAX_OPEN_ATTEMPTS = 5
# A failure like the one stored is stored again only once its next attempt is this stale: on a
# nearly full disk every write takes room until the next checkpoint, and the room left must
# serve for the write that gives up.
REFRESH_FAILURE_MS = 60_000
# What a failed row keeps: an id of more than KEPT_ID_CHARS (four times the longest valid one)
# is cut and ends with …, and so is a longer line; the failures file says which lines it holds
# only in part.
KEPT_ID_CHARS = 1024
KEPT_LINE_BYTES = 8 * 1024
FAILURES_PAGE = 1_000  # failed rows read at a time when a failures file is written
# Cells that a spreadsheet would run as a formula; its safe variant of the failures file
# prefixes them with ' (OWASP's advice on CSV injection).
FORMULA_STARTS = (b"=", b"+", b"-", b"@", b"\t", b"\r")


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

    def failed_rows_csv(self, batch: Batch, for_spreadsheets: bool = False) -> Iterator[bytes]:
        """The failed rows as a batch file, line by line: the header, each row as sent, and a
        comment column with its reason, which the parser ignores, so the file can be fixed and
        resubmitted as it is. A row kept only in part (see KEPT_LINE_BYTES) gets one cell too
        many, so that resubmitted as it is, it fails instead of writing cut values. The variant
        for spreadsheets defuses formulas, and so cannot be resubmitted byte for byte."""
        width = len(batch.header.split(b","))
        yield batch.header + b",#reason\n"
        for row in self._all_failed_rows(batch.seq):
            cells = row.raw.count(b",") + 1
            padding = b"," * (width - cells) if cells < width else b""
            reason, cut = f"line {row.line}: {row.reason}", len(row.raw) < row.raw_length
            if cut:
                reason += (f"; only the first {len(row.raw):,} of its {row.raw_length:,} bytes are kept, "
                           "so it cannot be resubmitted as it is")  # fmt: skip
            line = row.raw + padding + b"," + quote(reason, safe=" ()':;/-_.!~*").encode() + (b",#cut" if cut else b"")
            yield (_defused(line) if for_spreadsheets else line) + b"\n"

    def unprocessed_rows_csv(self, batch: Batch) -> bytes:
        """A stuck batch's rows not yet applied, as a batch file to resubmit."""
        if batch.state != STUCK:
            status = target_status(batch)
            raise Rejected(409, f"Batch {id_of(batch)} is {status}: only a stuck batch has rows left unapplied")
        payload = self.store.batch_payload(batch.seq)
        if payload is None:
            raise Rejected(410, f"The bytes of batch {id_of(batch)} are no longer stored: {batch.stuck_reason}")
        return batch.header + b"\n" + payload[batch.cursor:]

    def _all_failed_rows(self, seq: int) -> Iterator[FailedRow]:
        """Every failed row of the batch, a page at a time (a batch may have 500,000)."""
        after_line = 0
        while page := self.store.failed_rows(seq, FAILURES_PAGE, after_line=after_line):
            yield from page
            after_line = page[-1].line

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
            failures = [failed_row(r.line, r.id, r.reason, r.raw) for r in rows if isinstance(r, RowFailure)]
            failures += outcome.failures
            if failures:
                tx.add_failed_rows(current.seq, failures)
            done = cursor >= current.payload_bytes
            updated = replace(
                current,
                cursor=cursor, cursor_line=cursor_line, consumed=current.consumed + len(rows),
                successful=current.successful + outcome.successful, not_found=current.not_found + outcome.not_found,
                failed=current.failed + len(failures), attempts=0, open_attempts=0, last_error=None,
                failing_since_ms=None, next_attempt_ms=None,
                state=COMPLETE if done else RUNNING, started_ms=current.started_ms or now,
                finished_ms=now if done else None, held_reason=None if done else held_reason,
            )  # fmt: skip
            if done:
                tx.drop_payload(current.seq)
            tx.update_batch(updated)
            return updated

        # The chunk can be redone from the batch's durable bytes: its commit need not wait for the disk.
        return self.store.write(batch.client, apply, durable=False)

    def record_failed_attempt(self, batch: Batch, error: Exception, retry_in_ms: int) -> Batch:
        """Note that an attempt at the batch's next chunk failed, to be tried again in
        retry_in_ms. A failure that passes (StoreUnavailable) keeps the batch in its place, so
        that its client's later batches wait behind it, until such failures have lasted the
        give-up time; any other error counts, and after MAX_ATTEMPTS in a row the batch is stuck."""
        now = self.clock()
        passes, reason = isinstance(error, StoreUnavailable), failure_reason(error)
        give_up_ms = int(self.settings.retry_give_up_hours * HOUR_MS)

        def record(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current is None or current.state in (COMPLETE, STUCK):
                return current or batch
            since = current.failing_since_ms or now
            attempts = current.attempts + (0 if passes else 1)
            if passes and now - since >= give_up_ms:
                hours = self.settings.retry_give_up_hours
                return self._stuck(tx, current, f"gave up after {hours:g} h of failed attempts; the last: {reason}")
            if attempts >= MAX_ATTEMPTS:
                return self._stuck(tx, current, reason)
            fresh = now < (current.next_attempt_ms or 0) + REFRESH_FAILURE_MS
            if passes and reason == current.last_error and fresh and not current.open_attempts:
                return current  # as stored, but for a next attempt that health and serve's records show
            updated = replace(current, attempts=attempts, open_attempts=0, last_error=reason, failing_since_ms=since,
                              next_attempt_ms=now + retry_in_ms)  # fmt: skip
            tx.update_batch(updated)
            return updated

        return self.store.write(batch.client, record)

    def start_attempt(self, batch: Batch) -> Batch:
        """Note that a worker begins on the batch's next chunk; after MAX_OPEN_ATTEMPTS begun and
        never ended, the batch is stuck instead (see there)."""

        def start(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current is None or current.state in (COMPLETE, STUCK):
                return current or batch
            if current.open_attempts >= MAX_OPEN_ATTEMPTS:
                return self._stuck(tx, current, f"the worker stopped {current.open_attempts} times while applying "
                                                f"line {current.cursor_line} on, with nothing committed (killed, out "
                                                "of memory or frozen: see its log)")  # fmt: skip
            started = replace(current, open_attempts=current.open_attempts + 1)
            tx.update_batch(started)
            return started

        return self.store.write(batch.client, start)

    def give_up(self, batch: Batch, reason: str) -> Batch:
        """Make the batch stuck at once: it can never be applied (its bytes are lost or
        unreadable), unless it finished meanwhile (another worker may have dropped its bytes)."""

        def give_up(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current is None or current.state in (COMPLETE, STUCK):
                return current or batch
            return self._stuck(tx, current, reason)

        return self.store.write(batch.client, give_up)

    def _stuck(self, tx: WriteTx, batch: Batch, reason: str) -> Batch:
        stuck = replace(batch, state=STUCK, stuck_reason=reason, finished_ms=self.clock(), next_attempt_ms=None)
        tx.update_batch(stuck)
        return stuck

    def purge_finished(self, limit: int) -> int:
        """Delete up to `limit` batches finished longer ago than the retention, with their
        failed rows; how many."""
        retention_ms = int(self.settings.batch_retention_days * 24 * HOUR_MS)
        return self.store.write(None, lambda tx: tx.purge_batches(self.clock() - retention_ms, limit))


def failure_reason(error: Exception) -> str:
    """An attempt's failure in a few words: the store's cause, or the error as raised."""
    return error.cause if isinstance(error, StoreUnavailable) else f"{type(error).__name__}: {error}"


def failed_row(line: int, visitor_id: str, reason: str, raw: bytes) -> FailedRow:
    """A row that failed, as kept: its id and line cut to KEPT_ID_CHARS and KEPT_LINE_BYTES."""
    kept_id = visitor_id if len(visitor_id) <= KEPT_ID_CHARS else visitor_id[:KEPT_ID_CHARS] + "…"
    return FailedRow(line, kept_id, reason, raw[:KEPT_LINE_BYTES], len(raw))


def _defused(line: bytes) -> bytes:
    return b",".join(b"'" + cell if cell.startswith(FORMULA_STARTS) else cell for cell in line.split(b","))


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
            outcome.failures.append(failed_row(row.line, row.id, e.message, row.raw))
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
