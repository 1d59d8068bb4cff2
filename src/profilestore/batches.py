"""The rules of bulk profile updates: accepting a batch, applying it, reporting on it.

A batch is applied chunk by chunk (apply_batch); each chunk is one write transaction that
checks and advances the batch's cursor (write_chunk), so a worker killed at any moment resumes
exactly where the last commit left off, and two workers on one store never apply the same
chunk twice. The worker (worker.py) only decides when: which batch, and what to do when an
attempt fails.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from .batchfile import Header, Row, count_rows, parse_header, parse_rows, take_lines
from .bulkmerge import RowsMerged, merge_chunk
from .clients import check_client, client_limit
from .config import Settings
from .errors import (
    BadRequest,
    IdempotencyKeyReused,
    InWrongState,
    NoLongerStored,
    NotFound,
    ProfileTooLarge,
    TooLarge,
)
from .ids import parse_batch_id
from .limits import Pacer, check_daily_rows
from .model import Batch, BatchState, FailedRow, IdempotencyKey, Profile
from .profiles import batch_write_order, new_profile, profiles_for_write, set_attributes
from .store.base import Store, StoreUnavailable, WriteTx
from .times import DAY_MS, HOUR_MS, MINUTE_MS, iso_ms, now_ms, utc_day_start
from .webhooks import new_delivery

log = logging.getLogger("profilestore.batches")
MAX_ATTEMPTS = 3  # failed attempts in a row, for reasons that do not pass, before a batch is stuck
# Attempts in a row that began and never ended, neither with a chunk committed nor with a
# failure recorded: the worker was killed, ran out of memory or froze on them. A batch that
# does that to every worker must not hold its client's queue (on SQLite, everyone's) for ever.
MAX_OPEN_ATTEMPTS = 5
# A failure like the one stored is stored again only once its next attempt is this stale: on a
# nearly full disk every write takes room until the next checkpoint, and the room left must
# serve for the write that gives up.
REFRESH_FAILURE_MS = MINUTE_MS
MAX_IDEMPOTENCY_KEY = 255  # characters, as Stripe and Fullstory take
FAILURES_PAGE = 1_000  # failed rows read at a time when a failures file is written
# Cells that a spreadsheet would run as a formula; its safe variant of the failures file
# prefixes them with ' (OWASP's advice on CSV injection).
FORMULA_STARTS = (b"=", b"+", b"-", b"@", b"\t", b"\r")


@dataclass(frozen=True)
class Chunk:
    """Parsed rows of a batch, from one cursor position to the next."""

    rows: list[Row | FailedRow]
    start: int  # the batch's cursor before these rows
    end: int  # and after them
    end_line: int


@dataclass
class Merged:
    """What a chunk's good rows did to the profiles they name, not yet written."""

    successful: int = 0
    not_found: int = 0
    failures: list[FailedRow] = field(default_factory=list)
    created: list[Profile] = field(default_factory=list)
    changed: list[Profile] = field(default_factory=list)  # profiles that existed before

    def write(self, tx: WriteTx) -> None:
        tx.insert_profiles(self.created)
        tx.save_profiles(self.changed)


class BatchService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms, lean: bool = True):
        """lean: merge chunks by the lean merge where it can (bulkmerge.py); False, only by the
        general one (tests/test_bulkmerge.py compares the two)."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.lean = lean

    # -- accepting -----------------------------------------------------------------------------

    def submit(
        self, client: str, version: int, payload: bytes | bytearray, idempotency_key: str | None = None
    ) -> tuple[Batch, bool]:
        """Check the batch's structure and store it durably; nothing is stored if it is refused.
        With an idempotency key, the same key, version and bytes again within the idempotency
        window answer the batch they made and store nothing; the same key with another batch is
        IdempotencyKeyReused. The batch, and whether it was accepted before (a replay)."""
        check_client(client)
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        header, size = self.check_structure(payload)
        now = self.clock()
        batch = Batch(
            seq=0, client=client, version=version, accepted_ms=now, size=size,
            payload_bytes=len(payload), header=header.line, cursor=header.body_offset, cursor_line=2,
        )  # fmt: skip
        daily_rows = client_limit(self.settings, self.store.client_config(client), "daily_rows")
        digest = batch_digest(version, payload) if idempotency_key is not None else ""

        def accept(tx: WriteTx) -> tuple[Batch, bool]:
            # In the client's write transaction: two submits with one key make one batch.
            earlier = self._earlier_batch(tx, client, idempotency_key, digest, now)
            if earlier is not None:
                return earlier, True
            if daily_rows:  # counted inside the transaction, so two uploads cannot both slip under
                check_daily_rows(client, tx.rows_accepted_since(client, utc_day_start(now)), size, daily_rows, now)
            batch.seq = tx.insert_batch(batch, payload)
            if idempotency_key is not None:
                tx.save_idempotency_key(IdempotencyKey(client, idempotency_key, digest, batch.seq, now))
            return batch, False

        return self.store.write(client, accept)

    def check_structure(self, payload: bytes | bytearray) -> tuple[Header, int]:
        """The batch's header and its number of data rows; BadRequest or TooLarge if its structure
        refuses it whole."""
        header = parse_header(payload)
        size = count_rows(payload, header)
        if size == 0:
            raise BadRequest("Batch is empty: the file has a header line but no data rows")
        if size > self.settings.max_batch_rows:
            limit = self.settings.max_batch_rows
            raise TooLarge(f"The batch has {size:,} data rows; the limit is {limit:,} rows per batch")
        return header, size

    def _earlier_batch(self, tx: WriteTx, client: str, key: str | None, digest: str, now: int) -> Batch | None:
        """The batch this key made within the window, if it was made from the same version and
        bytes; IdempotencyKeyReused if from others."""
        found = tx.idempotency_key(client, key) if key is not None else None
        if found is None or now - found.accepted_ms >= self.settings.idempotency_hours * HOUR_MS:
            return None
        earlier = tx.batch(found.seq)
        if earlier is None:  # purged: the key is free again
            return None
        if found.digest != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was used at {iso_ms(found.accepted_ms)} for batch {earlier.id}, "
                "with another file or version; send a new key for a new batch"
            )
        return earlier

    # -- finding -------------------------------------------------------------------------------

    def find(self, batch_id_text: str, client: str | None = None) -> Batch:
        """The batch with this id (and of this client, if given); NotFound otherwise."""
        parsed = parse_batch_id(batch_id_text)
        batch = self.store.batch(parsed[2]) if parsed else None
        if (
            parsed is None
            or batch is None
            or (batch.client, batch.accepted_ms) != parsed[:2]
            or client not in (None, batch.client)
        ):
            raise NotFound(f"No batch found with batchId={batch_id_text}" + (f" for client {client}" if client else ""))
        return batch

    def failed_rows_csv(self, batch: Batch, for_spreadsheets: bool = False) -> Iterator[bytes]:
        """The failed rows as a batch file, line by line: the header, each row as sent, and a
        comment column with its reason, which the parser ignores, so the file can be fixed and
        resubmitted as it is. A row kept only in part (see model.KEPT_LINE_BYTES) gets one cell too
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
        if batch.state != BatchState.STUCK:
            status = batch.state.target_status
            raise InWrongState(f"Batch {batch.id} is {status}: only a stuck batch has rows left unapplied")
        payload = self.store.batch_payload(batch.seq)
        if payload is None:
            raise NoLongerStored(f"The bytes of batch {batch.id} are no longer stored: {batch.stuck_reason}")
        return batch.header + b"\n" + payload[batch.cursor :]

    def _all_failed_rows(self, seq: int) -> Iterator[FailedRow]:
        """Every failed row of the batch, a page at a time (a batch may have 500,000)."""
        after_line = 0
        while page := self.store.failed_rows(seq, FAILURES_PAGE, after_line=after_line):
            yield from page
            after_line = page[-1].line

    # -- applying ------------------------------------------------------------------------------

    def apply_batch(
        self, batch: Batch, pacer: Pacer, stopping: Callable[[], bool], progressed: Callable[[], None]
    ) -> Batch:
        """Apply the batch from its cursor, a chunk per transaction, until it is finished or
        stopping() says to stop; progressed() is called after each chunk. The pacer sizes the
        chunks and pauses between them inside an ingestion window. A batch whose bytes are
        missing or unreadable is stuck at once. Errors of the store pass to the caller, which
        records the failed attempt (record_failed_attempt) and tries again later."""
        log.info("applying batch %s from row %d of %d", batch.id, batch.consumed + 1, batch.size)
        payload = self.store.batch_payload(batch.seq)
        if payload is None:
            return self.give_up(batch, "the batch's bytes are missing from the store")
        try:
            header = parse_header(payload)
        except BadRequest as e:
            return self.give_up(batch, f"the stored batch is unreadable: {e.message}")
        chunk = read_chunk(header, payload, batch.cursor, batch.cursor_line, pacer.chunk_rows(pacer.window()))
        while not batch.state.finished and not stopping():
            batch, following = self._write_prefetch_and_pace(batch, header, payload, chunk, pacer)
            progressed()
            if following is None or following.start != batch.cursor:  # another worker moved the cursor
                rows = pacer.chunk_rows(pacer.window())
                following = read_chunk(header, payload, batch.cursor, batch.cursor_line, rows)
            chunk = following
        if batch.state == BatchState.COMPLETE:
            log.info("batch %s complete: %d rows, %d failed", batch.id, batch.size, batch.failed)
        return batch

    def _write_prefetch_and_pace(
        self, batch: Batch, header: Header, payload: bytes, chunk: Chunk, pacer: Pacer
    ) -> tuple[Batch, Chunk | None]:
        """Write the chunk; read the one after it beside the write, if the chunk was applied:
        the prefetch runs on this thread, the worker's, and where it runs in the write is the
        store's to say (see Store.write: PostgreSQL overlaps it with the server's work, SQLite
        runs it after the commit). Then pause, inside an ingestion window."""
        following: list[Chunk] = []
        started, window = self.clock(), pacer.window()
        rows, held = pacer.chunk_rows(window), window.reason() if window else None

        def prefetch() -> None:
            following.append(read_chunk(header, payload, chunk.end, chunk.end_line, rows))

        written = self.write_chunk(batch, header, chunk, held, prefetch)
        if window:
            pacer.pause(written.consumed - batch.consumed, window, (self.clock() - started) / 1000)
        return written, following[0] if following else None

    def write_chunk(
        self, batch: Batch, header: Header, chunk: Chunk, held_reason: str | None = None,
        prefetch: Callable[[], object] | None = None,
    ) -> Batch:  # fmt: skip
        """Apply the chunk in one transaction that also advances the batch's cursor. If the
        cursor is not where the chunk starts (another worker moved it), nothing is applied and
        the batch as it is now is returned. prefetch, if given, runs as Store.write says, and
        only if the chunk was applied."""
        rows, cursor, cursor_line = chunk.rows, chunk.end, chunk.end_line
        now = self.clock()
        applied: list[bool] = []

        def write(tx: WriteTx) -> Batch:
            current = tx.batch(batch.seq)
            if current is None:  # its record was deleted: no chunk of it can be applied
                raise LookupError(f"batch {batch.id} is no longer stored")
            if current.cursor != chunk.start or current.state.finished:
                return current
            merged: RowsMerged | Merged | None = None
            if self.lean:
                merged = merge_chunk(tx, current, header.key, header.names_chars, rows, now, self.settings)
            if merged is None:  # a row the lean merge cannot decide as the general one would
                merged = merge_rows(tx, current, header.key, rows, now, self.settings)
            failures = [r for r in rows if isinstance(r, FailedRow)] + merged.failures
            if failures:
                tx.add_failed_rows(current.seq, failures)
            done = cursor >= current.payload_bytes
            updated = replace(
                current,
                cursor=cursor, cursor_line=cursor_line, consumed=current.consumed + len(rows),
                successful=current.successful + merged.successful, not_found=current.not_found + merged.not_found,
                failed=current.failed + len(failures), attempts=0, open_attempts=0, last_error=None,
                failing_since_ms=None, next_attempt_ms=None,
                state=BatchState.COMPLETE if done else BatchState.RUNNING, started_ms=current.started_ms or now,
                finished_ms=now if done else None, held_reason=None if done else held_reason,
            )  # fmt: skip
            if done:
                tx.drop_payload(current.seq)
                new_delivery(tx, updated, self.settings, now)  # its webhook, if the client has one
            tx.update_batch(updated)
            # Last, so that the store may still be writing them when this function returns.
            merged.write(tx)
            applied.append(True)
            return updated

        def meanwhile() -> None:
            if prefetch is not None and applied:
                prefetch()

        # The chunk can be redone from the batch's durable bytes: its commit need not wait for the disk.
        return self.store.write(batch.client, write, durable=False, meanwhile=meanwhile)

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
            if current is None or current.state.finished:
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
            if current is None or current.state.finished:
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
            if current is None or current.state.finished:
                return current or batch
            return self._stuck(tx, current, reason)

        return self.store.write(batch.client, give_up)

    def _stuck(self, tx: WriteTx, batch: Batch, reason: str) -> Batch:
        stuck = replace(
            batch, state=BatchState.STUCK, stuck_reason=reason, finished_ms=self.clock(), next_attempt_ms=None
        )
        tx.update_batch(stuck)
        new_delivery(tx, stuck, self.settings, stuck.finished_ms or 0)  # its webhook, if the client has one
        return stuck

    def purge_finished(self, limit: int) -> int:
        """Delete up to `limit` batches finished longer ago than the retention, with their
        failed rows; how many."""
        retention_ms = int(self.settings.batch_retention_days * DAY_MS)
        return self.store.write(None, lambda tx: tx.purge_batches(self.clock() - retention_ms, limit))


def check_idempotency_key(key: str) -> None:
    """BadRequest unless the key is 1 to MAX_IDEMPOTENCY_KEY printable ASCII characters."""
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters "
            f"(got {len(key):,} characters{'' if key.isprintable() else ', some not printable'})"
        )


def batch_digest(version: int, payload: bytes | bytearray) -> str:
    """What makes two submits the same batch: the API version and the bytes as stored."""
    return hashlib.sha256(b"v%d\n" % version + payload).hexdigest()


def failure_reason(error: Exception) -> str:
    """An attempt's failure in a few words: the store's cause, or the error as raised."""
    return error.cause if isinstance(error, StoreUnavailable) else f"{type(error).__name__}: {error}"


def _defused(line: bytes) -> bytes:
    return b",".join(b"'" + cell if cell.startswith(FORMULA_STARTS) else cell for cell in line.split(b","))


def read_chunk(header: Header, payload: bytes, cursor: int, cursor_line: int, max_rows: int) -> Chunk:
    """Up to max_rows rows from the cursor, parsed."""
    lines, end, end_line = take_lines(payload, cursor, cursor_line, max_rows)
    return Chunk(parse_rows(header, lines), cursor, end, end_line)


def merge_rows(
    tx: WriteTx, batch: Batch, key: str, rows: list[Row | FailedRow], now: int, settings: Settings
) -> Merged:
    """Merge the good rows into their profiles, in file order, without writing them. v1
    updates existing profiles only; v2 creates the missing ones. A row that would pass the
    profile size cap fails alone and changes nothing."""
    good = [r for r in rows if isinstance(r, Row)]
    id_kind = "tntId" if key == "pcId" else "thirdPartyId"
    profiles = profiles_for_write(tx, batch.client, id_kind, {r.id for r in good}, now, settings.lifetime_ms)
    order = batch_write_order(batch.seq)
    merged = Merged()
    touched: dict[str, Profile] = {}  # by tntId, created or changed
    created: set[str] = set()
    for row in good:
        profile = profiles.get(row.id)
        if profile is None and batch.version == 1:
            merged.not_found += 1
            continue
        target = profile or new_profile(batch.client, key, row.id, now)
        try:
            set_attributes(target, row.attributes, now, order, settings.max_profile_bytes)
        except ProfileTooLarge as e:
            merged.failures.append(FailedRow.kept(row.line, row.id, e.message, row.raw))
            continue
        if profile is None:
            created.add(target.tnt_id)
        profiles[row.id] = target
        touched[target.tnt_id] = target
        merged.successful += 1
    merged.created = [p for tnt_id, p in touched.items() if tnt_id in created]
    merged.changed = [p for tnt_id, p in touched.items() if tnt_id not in created]
    return merged
