"""The embedded store: one SQLite file in WAL mode.

Every write runs on one writer thread (the only connection that writes, `BEGIN IMMEDIATE`),
so bulk chunks and other writes queue behind each other instead of fighting for the lock.
Each reader thread has its own read-only connection and, thanks to WAL, never waits for
the writer. Another process (a separate `profilestore worker`) may write to the same file;
SQLite's lock and the busy timeout arbitrate between processes.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import astuple, replace
from pathlib import Path

import orjson

from ..model import (
    Batch,
    BatchState,
    ClientConfig,
    FailedRow,
    IdempotencyKey,
    Profile,
    QueueState,
    Token,
    WebhookDelivery,
)
from ..times import HOUR_MS
from . import migrations
from .base import (
    Store,
    StoreConflict,
    StoredProfile,
    StoreError,
    StoreFailed,
    StoreUnavailable,
    T,
    WriteTx,
    wrapped_in,
    wrapping_errors,
)
from .rows import (
    BATCH_FIELDS,
    PROFILE_COLUMNS,
    WITH_THIRD_PARTY_ID,
    batch_values,
    profile_values,
    profiles_by_asked,
)

# Readers map the file (up to this much) instead of copying each page through read() calls.
READER_MMAP_BYTES = 1 << 30
BUSY_TIMEOUT_SECONDS = 30  # how long a write waits for another process's write lock

# SQLite's result codes for failures that pass (see StoreUnavailable), and what they mean: the
# extended code if it is listed, else the primary one.
PASSING_FAILURES = {
    264: "the database is being recovered by another process",  # SQLITE_READONLY_RECOVERY
    520: "the database cannot be locked",  # SQLITE_READONLY_CANTLOCK
    5: "the database is locked by another process",  # SQLITE_BUSY
    6: "the database is locked",  # SQLITE_LOCKED
    7: "SQLite is out of memory",  # SQLITE_NOMEM
    10: "disk I/O error",  # SQLITE_IOERR
    13: "the disk is full",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    15: "the database's locking failed",  # SQLITE_PROTOCOL
}

BATCH_COLUMNS = ", ".join(BATCH_FIELDS)
_BATCH_VALUES = ", ".join("?" * len(BATCH_FIELDS))
INSERT_BATCH = f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({_BATCH_VALUES})"
UPDATE_BATCH = f"UPDATE batches SET ({BATCH_COLUMNS}) = ({_BATCH_VALUES}) WHERE seq = ?"
SELECT_BATCHES = "SELECT * FROM batches WHERE (?1 IS NULL OR client = ?1) AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
SELECT_ROWS_SINCE = "SELECT coalesce(sum(size), 0) FROM batches WHERE client = ? AND accepted_ms >= ?"
SELECT_BATCH = "SELECT * FROM batches WHERE seq = ?"
SELECT_NEXT_BATCH = f"""SELECT * FROM batches WHERE state NOT IN ('{BatchState.COMPLETE}', '{BatchState.STUCK}')
    ORDER BY seq LIMIT 1"""
SELECT_QUEUE_STATE = f"""SELECT count(*), min(accepted_ms), count(failing_since_ms) FROM batches
    WHERE state NOT IN ('{BatchState.COMPLETE}', '{BatchState.STUCK}')"""
# Never the newest batch: its seq orders single writes (profiles.single_write_order).
SELECT_PURGEABLE = """SELECT seq FROM batches WHERE finished_ms < ? AND seq < (SELECT max(seq) FROM batches)
    ORDER BY finished_ms LIMIT ?"""
DELETE_BATCH = "DELETE FROM batches WHERE seq = ?"
DELETE_FAILED_ROWS_OF_BATCH = "DELETE FROM failed_rows WHERE seq = ?"
DELETE_IDEMPOTENCY_KEYS_OF_BATCH = "DELETE FROM idempotency_keys WHERE seq = ?"
IDEMPOTENCY_KEY_COLUMNS = "client, key, digest, seq, accepted_ms"
SELECT_IDEMPOTENCY_KEY = f"SELECT {IDEMPOTENCY_KEY_COLUMNS} FROM idempotency_keys WHERE client = ? AND key = ?"
UPSERT_IDEMPOTENCY_KEY = f"INSERT OR REPLACE INTO idempotency_keys ({IDEMPOTENCY_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
INSERT_PAYLOAD = "INSERT INTO batch_payloads (seq, payload) VALUES (?, zeroblob(?))"  # then written in pieces
PAYLOAD_PIECE = 1 << 20
SELECT_PAYLOAD = "SELECT payload FROM batch_payloads WHERE seq = ?"
DELETE_PAYLOAD = "DELETE FROM batch_payloads WHERE seq = ?"
INSERT_FAILED_ROW = "INSERT INTO failed_rows (seq, line, id, reason, raw, raw_length) VALUES (?, ?, ?, ?, ?, ?)"
SELECT_FAILED_ROWS = """SELECT line, id, reason, raw, raw_length FROM failed_rows WHERE seq = ? AND line > ?
    ORDER BY line LIMIT ? OFFSET ?"""


# Each takes (client, JSON array of ids) and returns (id asked for, profile columns...).
# CROSS JOIN keeps the ids as the outer loop, so each id is one index probe; a plain JOIN
# lets the planner scan every profile of the client and search the id list for each.
def _select_by(columns: str) -> dict[str, str]:
    asked = f"SELECT asked.value, {columns} FROM json_each(?2) AS asked CROSS JOIN profiles p ON p.client = ?1"
    return {
        "tntId": f"""{asked} AND p.tnt_id = coalesce(
            (SELECT m.into_tnt_id FROM merged_ids m WHERE m.client = ?1 AND m.tnt_id = asked.value), asked.value)""",
        "thirdPartyId": f"{asked} AND p.third_party_id = asked.value",
        "marketingCloudVisitorId": f"{asked} AND p.mcvid = asked.value",
    }


SELECT_PROFILES_BY = _select_by(", ".join(f"p.{c}" for c in PROFILE_COLUMNS.split(", ")))
# A profile's address is (rowid, active_hour): a rewrite within the hour stored leaves the
# column and its index alone (setting it to the same value would still rewrite the index entry).
SELECT_STORED_BY = _select_by("p.rowid, p.active_hour, p.modified_ms, p.active_ms, p.attributes")
UPDATE_PROFILE_ROW = "UPDATE profiles SET modified_ms = ?, attributes = ?, active_ms = ? WHERE rowid = ?"
UPDATE_PROFILE_ROW_AND_HOUR = f"""UPDATE profiles SET modified_ms = ?1, attributes = ?2, active_ms = ?3,
    active_hour = ?3 / {HOUR_MS} WHERE rowid = ?4"""
SELECT_HAS_CLIENT = "SELECT EXISTS (SELECT 1 FROM profiles WHERE client = ?)"
# Keyset paging on the primary key (client, tnt_id): each page is one range scan of the index.
SELECT_PROFILES_PAGE = {
    kind: f"""SELECT {PROFILE_COLUMNS} FROM profiles WHERE client = ?1 AND tnt_id > ?2 {condition}
        ORDER BY tnt_id LIMIT ?3"""
    for kind, condition in WITH_THIRD_PARTY_ID.items()
}
SELECT_ATTRIBUTE_NAMES = {
    kind: f"""SELECT DISTINCT a.key FROM profiles, json_each(profiles.attributes) a WHERE client = ?1 {condition}
        AND active_ms >= ?2 AND modified_ms >= ?3"""
    for kind, condition in WITH_THIRD_PARTY_ID.items()
}
SELECT_LAST_BATCH_SEQ = "SELECT coalesce(max(seq), 0) FROM batches"
DELETE_PROFILE = "DELETE FROM profiles WHERE client = ? AND tnt_id = ?"
REPOINT_MERGED_IDS = "UPDATE merged_ids SET into_tnt_id = ?3 WHERE client = ?1 AND into_tnt_id = ?2"
INSERT_MERGED_ID = "INSERT OR REPLACE INTO merged_ids (client, tnt_id, into_tnt_id) VALUES (?1, ?2, ?3)"
# PROFILE_COLUMNS and active_hour, made from active_ms (?8).
INSERT_PROFILE = (
    f"INSERT INTO profiles ({PROFILE_COLUMNS}, active_hour) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 / {HOUR_MS})"
)
UPSERT_PROFILE = f"""{INSERT_PROFILE}
ON CONFLICT (client, tnt_id) DO UPDATE SET
    created_ms = excluded.created_ms,
    modified_ms = excluded.modified_ms,
    third_party_id = excluded.third_party_id,
    mcvid = excluded.mcvid,
    attributes = excluded.attributes,
    active_ms = excluded.active_ms,
    active_hour = excluded.active_hour
"""
DELETE_MERGED_INTO = "DELETE FROM merged_ids WHERE client = ? AND into_tnt_id = ?"
SELECT_MERGED_INTO = "SELECT tnt_id FROM merged_ids WHERE client = ? AND into_tnt_id = ? ORDER BY tnt_id"
SELECT_INACTIVE = f"SELECT client, tnt_id FROM profiles WHERE active_hour <= ?1 / {HOUR_MS} AND active_ms < ?1 LIMIT ?2"
DELETE_FAILED_ROWS_OF = """DELETE FROM failed_rows WHERE seq IN (SELECT seq FROM batches WHERE client = ?1)
    AND id IN (SELECT value FROM json_each(?2))"""
CLIENT_COLUMNS = "client, auth_required, daily_rows, calls_per_minute, webhook_url, webhook_secret"
SELECT_CLIENT = f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client = ?"
UPSERT_CLIENT = f"INSERT OR REPLACE INTO clients ({CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
DELIVERY_COLUMNS = """event_id, client, seq, event, body, created_ms, attempts, next_attempt_ms, delivered_ms,
    last_status, last_error"""
INSERT_DELIVERY = f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_DUE_DELIVERIES = f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE next_attempt_ms <= ?
    ORDER BY next_attempt_ms LIMIT ?"""
CLAIM_DELIVERY = "UPDATE webhook_deliveries SET next_attempt_ms = ? WHERE event_id = ?"
UPDATE_DELIVERY = """UPDATE webhook_deliveries SET attempts = ?, next_attempt_ms = ?, delivered_ms = ?, last_status = ?,
    last_error = ? WHERE event_id = ?"""
SELECT_DELIVERIES = f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE client = ?
    ORDER BY created_ms DESC, seq DESC LIMIT ?"""
DELETE_DELIVERIES_OF_BATCH = "DELETE FROM webhook_deliveries WHERE seq = ?"
TOKEN_COLUMNS = "id, client, hash, created_ms, expires_ms, revoked_ms"
SELECT_TOKEN_BY_HASH = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"
SELECT_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE client = ? ORDER BY rowid"
UPSERT_TOKEN = f"""INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms, revoked_ms = excluded.revoked_ms"""


def _batch(row: sqlite3.Row | None) -> Batch | None:
    return Batch(**dict(row)) if row else None


def _profiles_by(conn: sqlite3.Connection, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
    return profiles_by_asked(conn.execute(SELECT_PROFILES_BY[id_kind], (client, json.dumps(list(ids)))))


def _client_config(row) -> ClientConfig | None:
    return ClientConfig(row[0], bool(row[1]), *tuple(row)[2:]) if row else None


@contextmanager
def _wrapped_errors() -> Iterator[None]:
    """SQLite's errors as the store's (see store.base): those that pass (a full disk, a lock
    held too long) as StoreUnavailable, a broken constraint as StoreConflict, any other as
    StoreFailed."""
    try:
        yield
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", 0)
        cause = PASSING_FAILURES.get(code) or PASSING_FAILURES.get(code & 0xFF)
        if cause is not None:
            raise StoreUnavailable(f"{cause} ({e.sqlite_errorname})") from e
        kind = StoreConflict if isinstance(e, sqlite3.IntegrityError) else StoreFailed
        name = getattr(e, "sqlite_errorname", None)  # none on the errors of Python's module itself
        raise kind(f"{e} ({name})" if name else str(e)) from e


_translated = wrapped_in(_wrapped_errors)  # for the reads, which run outside write()


class _Migrations(migrations.Database):
    """The file, for the migration runner: PRAGMA user_version is the last migration applied,
    and one run applies all it lacks in one transaction, whose BEGIN IMMEDIATE keeps other
    processes out until it commits."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    @contextmanager
    def whole_run(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        yield  # after an error, closing the connection rolls back
        self._conn.execute("COMMIT")

    def applied(self) -> range:
        return range(self._conn.execute("PRAGMA user_version").fetchone()[0] + 1)

    def run(self, script: str) -> None:
        for statement in migrations.statements(script):
            self._conn.execute(statement)

    def record(self, migration: migrations.Migration) -> None:
        self._conn.execute(f"PRAGMA user_version = {migration.version}")


def migrate(path: Path) -> list[str]:
    """Apply the migrations the file lacks, all in one transaction; their names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        return migrations.migrate(_Migrations(conn))
    finally:
        conn.close()


def _pending_versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        return [migration.version for migration in migrations.pending(_Migrations(conn))]
    finally:
        conn.close()


def _rolled_back(conn: sqlite3.Connection) -> bool:
    """Roll back after an error; False if the connection is too broken for that."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False


@wrapping_errors(_wrapped_errors)
class SQLiteTx(WriteTx):
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def insert_batch(self, batch: Batch, payload: bytes | bytearray) -> int:
        seq = self._conn.execute(INSERT_BATCH, batch_values(batch)).lastrowid
        assert seq is not None  # set by every INSERT
        self._conn.execute(INSERT_PAYLOAD, (seq, len(payload)))
        # Piece by piece: bound as one parameter, 50 MB were copied in one go holding the GIL,
        # and every request of the process waited for it.
        view = memoryview(payload)
        with self._conn.blobopen("batch_payloads", "payload", seq) as blob:
            for offset in range(0, len(payload), PAYLOAD_PIECE):
                blob.write(view[offset : offset + PAYLOAD_PIECE])
        return seq

    def batch(self, seq: int) -> Batch | None:
        return _batch(self._conn.execute(SELECT_BATCH, (seq,)).fetchone())

    def update_batch(self, batch: Batch) -> None:
        self._conn.execute(UPDATE_BATCH, (*batch_values(batch), batch.seq))

    def drop_payload(self, seq: int) -> None:
        self._conn.execute(DELETE_PAYLOAD, (seq,))

    def add_failed_rows(self, seq: int, rows: Iterable[FailedRow]) -> None:
        values = ((seq, r.line, r.id, r.reason, r.raw, r.raw_length) for r in rows)
        self._conn.executemany(INSERT_FAILED_ROW, values)

    def purge_batches(self, finished_before_ms: int, limit: int) -> int:
        doomed = [(row[0],) for row in self._conn.execute(SELECT_PURGEABLE, (finished_before_ms, limit))]
        for statement in (DELETE_FAILED_ROWS_OF_BATCH, DELETE_IDEMPOTENCY_KEYS_OF_BATCH, DELETE_DELIVERIES_OF_BATCH,
                          DELETE_PAYLOAD, DELETE_BATCH):  # fmt: skip
            self._conn.executemany(statement, doomed)
        return len(doomed)

    def idempotency_key(self, client: str, key: str) -> IdempotencyKey | None:
        row = self._conn.execute(SELECT_IDEMPOTENCY_KEY, (client, key)).fetchone()
        return IdempotencyKey(*row) if row else None

    def save_idempotency_key(self, key: IdempotencyKey) -> None:
        self._conn.execute(UPSERT_IDEMPOTENCY_KEY, astuple(key))

    def profiles_by(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
        return _profiles_by(self._conn, client, id_kind, ids)

    def insert_profiles(self, profiles: list[Profile]) -> None:
        self._conn.executemany(INSERT_PROFILE, map(profile_values, profiles))

    def save_profiles(self, profiles: list[Profile]) -> None:
        self._conn.executemany(UPSERT_PROFILE, map(profile_values, profiles))

    def stored_profiles(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, StoredProfile]:
        cursor = self._conn.cursor()
        cursor.row_factory = None  # plain tuples, made in C
        rows = cursor.execute(SELECT_STORED_BY[id_kind], (client, orjson.dumps(list(ids)).decode()))
        return {asked: StoredProfile((rowid, hour), *stored) for asked, rowid, hour, *stored in rows}

    def write_profile_rows(self, new: list[tuple], changed: list[tuple]) -> None:
        self._conn.executemany(INSERT_PROFILE, new)
        within_hour = [(m, a, ms, rowid) for m, a, ms, (rowid, hour) in changed if ms // HOUR_MS == hour]
        if len(within_hour) < len(changed):
            later = [(m, a, ms, rowid) for m, a, ms, (rowid, hour) in changed if ms // HOUR_MS != hour]
            self._conn.executemany(UPDATE_PROFILE_ROW_AND_HOUR, later)
        self._conn.executemany(UPDATE_PROFILE_ROW, within_hour)

    def retire_profile(self, client: str, tnt_id: str, into_tnt_id: str) -> None:
        self._conn.execute(DELETE_PROFILE, (client, tnt_id))
        self._conn.execute(REPOINT_MERGED_IDS, (client, tnt_id, into_tnt_id))
        self._conn.execute(INSERT_MERGED_ID, (client, tnt_id, into_tnt_id))

    def delete_profile(self, client: str, tnt_id: str) -> None:
        self._conn.execute(DELETE_PROFILE, (client, tnt_id))
        self._conn.execute(DELETE_MERGED_INTO, (client, tnt_id))

    def purge_inactive(self, active_before_ms: int, limit: int) -> int:
        doomed = self._conn.execute(SELECT_INACTIVE, (active_before_ms, limit)).fetchall()
        for client, tnt_id in doomed:
            self.delete_profile(client, tnt_id)
        return len(doomed)

    def delete_failed_rows(self, client: str, ids: Iterable[str]) -> int:
        return self._conn.execute(DELETE_FAILED_ROWS_OF, (client, json.dumps(list(ids)))).rowcount

    def last_batch_seq(self) -> int:
        return self._conn.execute(SELECT_LAST_BATCH_SEQ).fetchone()[0]

    def rows_accepted_since(self, client: str, since_ms: int) -> int:
        return self._conn.execute(SELECT_ROWS_SINCE, (client, since_ms)).fetchone()[0]

    def save_client(self, config: ClientConfig) -> None:
        self._conn.execute(UPSERT_CLIENT, astuple(config))

    def client_config(self, client: str) -> ClientConfig | None:
        return _client_config(self._conn.execute(SELECT_CLIENT, (client,)).fetchone())

    def insert_delivery(self, delivery: WebhookDelivery) -> None:
        self._conn.execute(INSERT_DELIVERY, astuple(delivery))

    def claim_deliveries(self, now_ms: int, until_ms: int, limit: int) -> list[WebhookDelivery]:
        due = [WebhookDelivery(*row) for row in self._conn.execute(SELECT_DUE_DELIVERIES, (now_ms, limit))]
        self._conn.executemany(CLAIM_DELIVERY, [(until_ms, d.event_id) for d in due])
        return [replace(d, next_attempt_ms=until_ms) for d in due]

    def update_delivery(self, d: WebhookDelivery) -> None:
        values = (d.attempts, d.next_attempt_ms, d.delivered_ms, d.last_status, d.last_error, d.event_id)
        self._conn.execute(UPDATE_DELIVERY, values)

    def save_token(self, token: Token) -> None:
        self._conn.execute(UPSERT_TOKEN, astuple(token))

    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._conn.execute(SELECT_TOKENS, (client,))]


class SQLiteStore(Store):
    fast_reads = True  # an indexed read of a local file

    def __init__(self, path: Path, run_migrations: bool = True):
        self.path = path
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        try:
            if run_migrations:
                migrate(path)
            pending = _pending_versions(path)
            self.write(None, lambda tx: None)  # the writer can open the file
        except (OSError, sqlite3.Error, StoreUnavailable, StoreFailed) as e:
            self.close()
            raise StoreError(f"cannot open {path}: {e}") from None
        if pending:
            self.close()
            raise StoreError(f"the database lacks migrations {pending}: run `profilestore migrate`")

    # -- writes -------------------------------------------------------------------------------

    def write(
        self, client: str | None, fn: Callable[[WriteTx], T], durable: bool = True,
        meanwhile: Callable[[], object] | None = None,
    ) -> T:  # fmt: skip
        # One writer thread: every write, of any client, runs one at a time.
        if self._closed:
            raise RuntimeError("store is closed")
        future: Future = Future()
        self._writes.put((fn, durable, future))
        with _wrapped_errors():
            result = future.result()
        if meanwhile is not None:
            meanwhile()
        return result

    def _write_loop(self) -> None:
        """Run each queued write in its own transaction. Nothing ends this loop but close():
        a failed write fails alone, and a connection too broken to roll back is replaced."""
        conn: sqlite3.Connection | None = None
        while (item := self._writes.get()) is not None:
            fn, durable, future = item
            try:
                conn = conn or self._open_writer()
                result = self._transaction(conn, fn, durable)
            except BaseException as e:  # the caller gets the error; the writer goes on
                if conn is not None and not _rolled_back(conn):
                    conn.close()
                    conn = None
                future.set_exception(e)
            else:
                future.set_result(result)
        if conn is not None:
            conn.close()

    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: a checkpoint runs inside the
            # commit that triggers it, and at the default a bulk load paid one every chunk or two.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
        except BaseException:
            _rolled_back(conn)
            conn.close()
            raise
        return conn

    @staticmethod
    def _transaction(conn: sqlite3.Connection, fn: Callable[[WriteTx], T], durable: bool) -> T:
        # FULL: an acknowledged write survives a power cut; NORMAL, in WAL mode, still
        # survives any crash of the process.
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        conn.execute("BEGIN IMMEDIATE")
        result = fn(SQLiteTx(conn))
        conn.execute("COMMIT")
        return result

    # -- reads --------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @_translated
    def profile(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        return _profiles_by(self._reader(), client, id_kind, [visitor_id]).get(visitor_id)

    @_translated
    def profile_rows(
        self, client: str, after_tnt_id: str | None, limit: int, with_third_party_id: bool | None = None
    ) -> list[tuple]:
        cursor = self._reader().cursor()
        cursor.row_factory = None  # plain tuples: a sqlite3.Row per profile costs a third of the read
        return cursor.execute(SELECT_PROFILES_PAGE[with_third_party_id], (client, after_tnt_id or "", limit)).fetchall()

    @_translated
    def attribute_names(
        self, client: str, with_third_party_id: bool | None, active_since_ms: int, modified_since_ms: int
    ) -> set[str]:
        query = (client, active_since_ms, modified_since_ms)
        return {row[0] for row in self._reader().execute(SELECT_ATTRIBUTE_NAMES[with_third_party_id], query)}

    @_translated
    def has_client(self, client: str) -> bool:
        return bool(self._reader().execute(SELECT_HAS_CLIENT, (client,)).fetchone()[0])

    @_translated
    def merged_tnt_ids(self, client: str, tnt_id: str) -> list[str]:
        return [row[0] for row in self._reader().execute(SELECT_MERGED_INTO, (client, tnt_id))]

    @_translated
    def client_config(self, client: str) -> ClientConfig | None:
        return _client_config(self._reader().execute(SELECT_CLIENT, (client,)).fetchone())

    @_translated
    def token_by_hash(self, token_hash: str) -> Token | None:
        row = self._reader().execute(SELECT_TOKEN_BY_HASH, (token_hash,)).fetchone()
        return Token(*row) if row else None

    @_translated
    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._reader().execute(SELECT_TOKENS, (client,))]

    @_translated
    def batches(self, client: str | None, limit: int, before_seq: int | None = None) -> list[Batch]:
        rows = self._reader().execute(SELECT_BATCHES, (client, before_seq or 2**62, limit))
        return [Batch(**dict(row)) for row in rows]

    @_translated
    def batch(self, seq: int) -> Batch | None:
        return _batch(self._reader().execute(SELECT_BATCH, (seq,)).fetchone())

    @_translated
    def queue_state(self) -> QueueState:
        return QueueState(*self._reader().execute(SELECT_QUEUE_STATE).fetchone())

    @contextmanager
    def claim_next_batch(self) -> Iterator[Batch | None]:
        # The earliest unfinished batch of all: no earlier batch of its client can be unfinished.
        # Nothing marks it held, so workers in other processes may take it too.
        with _wrapped_errors():
            batch = _batch(self._reader().execute(SELECT_NEXT_BATCH).fetchone())
        yield batch

    @_translated
    def deliveries(self, client: str, limit: int) -> list[WebhookDelivery]:
        return [WebhookDelivery(*row) for row in self._reader().execute(SELECT_DELIVERIES, (client, limit))]

    @_translated
    def batch_payload(self, seq: int) -> bytes | None:
        row = self._reader().execute(SELECT_PAYLOAD, (seq,)).fetchone()
        return row[0] if row else None

    @_translated
    def failed_rows(self, seq: int, limit: int | None = None, offset: int = 0, after_line: int = 0) -> list[FailedRow]:
        rows = self._reader().execute(SELECT_FAILED_ROWS, (seq, after_line, -1 if limit is None else limit, offset))
        return [FailedRow(*row) for row in rows]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writes.put(None)
        self._writer.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
