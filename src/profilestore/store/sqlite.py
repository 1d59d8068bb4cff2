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
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .base import COMPLETE, STUCK, Batch, ClientConfig, FailedRow, Profile, Store, T, Token, WriteTx
from .rows import BATCH_FIELDS, PROFILE_COLUMNS, batch_values, profile_values, profiles_by_asked

SCHEMA_VERSION = 1
# Readers map the file (up to this much) instead of copying each page through read() calls.
READER_MMAP_BYTES = 1 << 30

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client TEXT NOT NULL,
    version INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL,
    header BLOB NOT NULL,
    cursor INTEGER NOT NULL,
    cursor_line INTEGER NOT NULL,
    state TEXT NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0,
    successful INTEGER NOT NULL DEFAULT 0,
    not_found INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER,
    finished_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    stuck_reason TEXT,
    held_reason TEXT
);
CREATE INDEX IF NOT EXISTS batches_to_apply ON batches (seq) WHERE state NOT IN ('complete', 'stuck');
CREATE INDEX IF NOT EXISTS batches_by_client ON batches (client, accepted_ms);
CREATE TABLE IF NOT EXISTS batch_payloads (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_rows (
    seq INTEGER NOT NULL,
    line INTEGER NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL,
    PRIMARY KEY (seq, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    client TEXT NOT NULL,
    tnt_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    third_party_id TEXT,
    mcvid TEXT,
    attributes TEXT NOT NULL,  -- JSON {name: [value, modified_ms, order]}
    active_ms INTEGER NOT NULL,
    PRIMARY KEY (client, tnt_id)
);
CREATE INDEX IF NOT EXISTS profiles_active ON profiles (active_ms);
CREATE UNIQUE INDEX IF NOT EXISTS profiles_third_party_id
    ON profiles (client, third_party_id) WHERE third_party_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS profiles_mcvid ON profiles (client, mcvid) WHERE mcvid IS NOT NULL;
CREATE TABLE IF NOT EXISTS merged_ids (
    client TEXT NOT NULL,
    tnt_id TEXT NOT NULL,
    into_tnt_id TEXT NOT NULL,
    PRIMARY KEY (client, tnt_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS merged_ids_into ON merged_ids (client, into_tnt_id);
CREATE TABLE IF NOT EXISTS clients (
    client TEXT PRIMARY KEY,
    auth_required INTEGER NOT NULL,
    daily_rows INTEGER,
    calls_per_minute INTEGER
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_by_client ON tokens (client);
"""

BATCH_COLUMNS = ", ".join(BATCH_FIELDS)
_BATCH_VALUES = ", ".join("?" * len(BATCH_FIELDS))
INSERT_BATCH = f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({_BATCH_VALUES})"
UPDATE_BATCH = f"UPDATE batches SET ({BATCH_COLUMNS}) = ({_BATCH_VALUES}) WHERE seq = ?"
SELECT_BATCHES = "SELECT * FROM batches WHERE (?1 IS NULL OR client = ?1) AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
SELECT_ROWS_SINCE = "SELECT coalesce(sum(size), 0) FROM batches WHERE client = ? AND accepted_ms >= ?"
SELECT_BATCH = "SELECT * FROM batches WHERE seq = ?"
SELECT_NEXT_BATCH = f"SELECT * FROM batches WHERE state NOT IN ('{COMPLETE}', '{STUCK}') ORDER BY seq LIMIT 1"
INSERT_PAYLOAD = "INSERT INTO batch_payloads (seq, payload) VALUES (?, ?)"
SELECT_PAYLOAD = "SELECT payload FROM batch_payloads WHERE seq = ?"
DELETE_PAYLOAD = "DELETE FROM batch_payloads WHERE seq = ?"
INSERT_FAILED_ROW = "INSERT INTO failed_rows (seq, line, id, reason, raw) VALUES (?, ?, ?, ?, ?)"
SELECT_FAILED_ROWS = "SELECT line, id, reason, raw FROM failed_rows WHERE seq = ? ORDER BY line LIMIT ? OFFSET ?"
# Each takes (client, JSON array of ids) and returns (id asked for, profile columns...).
# CROSS JOIN keeps the ids as the outer loop, so each id is one index probe; a plain JOIN
# lets the planner scan every profile of the client and search the id list for each.
_P_COLUMNS = ", ".join(f"p.{c}" for c in PROFILE_COLUMNS.split(", "))
_ASKED = f"SELECT asked.value, {_P_COLUMNS} FROM json_each(?2) AS asked CROSS JOIN profiles p ON p.client = ?1"
SELECT_PROFILES_BY = {
    "tntId": f"""{_ASKED} AND p.tnt_id = coalesce(
        (SELECT m.into_tnt_id FROM merged_ids m WHERE m.client = ?1 AND m.tnt_id = asked.value), asked.value)""",
    "thirdPartyId": f"{_ASKED} AND p.third_party_id = asked.value",
    "marketingCloudVisitorId": f"{_ASKED} AND p.mcvid = asked.value",
}
SELECT_HAS_CLIENT = "SELECT EXISTS (SELECT 1 FROM profiles WHERE client = ?)"
SELECT_LAST_BATCH_SEQ = "SELECT coalesce(max(seq), 0) FROM batches"
DELETE_PROFILE = "DELETE FROM profiles WHERE client = ? AND tnt_id = ?"
REPOINT_MERGED_IDS = "UPDATE merged_ids SET into_tnt_id = ?3 WHERE client = ?1 AND into_tnt_id = ?2"
INSERT_MERGED_ID = "INSERT OR REPLACE INTO merged_ids (client, tnt_id, into_tnt_id) VALUES (?1, ?2, ?3)"
INSERT_PROFILE = f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_PROFILE = f"""
INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client, tnt_id) DO UPDATE SET
    created_ms = excluded.created_ms,
    modified_ms = excluded.modified_ms,
    third_party_id = excluded.third_party_id,
    mcvid = excluded.mcvid,
    attributes = excluded.attributes,
    active_ms = excluded.active_ms
"""
DELETE_MERGED_INTO = "DELETE FROM merged_ids WHERE client = ? AND into_tnt_id = ?"
SELECT_MERGED_INTO = "SELECT tnt_id FROM merged_ids WHERE client = ? AND into_tnt_id = ? ORDER BY tnt_id"
SELECT_INACTIVE = "SELECT client, tnt_id FROM profiles WHERE active_ms < ? LIMIT ?"
DELETE_FAILED_ROWS_OF = """DELETE FROM failed_rows WHERE seq IN (SELECT seq FROM batches WHERE client = ?1)
    AND id IN (SELECT value FROM json_each(?2))"""
SELECT_CLIENT = "SELECT client, auth_required, daily_rows, calls_per_minute FROM clients WHERE client = ?"
UPSERT_CLIENT = "INSERT OR REPLACE INTO clients (client, auth_required, daily_rows, calls_per_minute) VALUES (?, ?, ?, ?)"
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
    return ClientConfig(row[0], bool(row[1]), row[2], row[3]) if row else None


class SQLiteTx(WriteTx):
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def insert_batch(self, batch: Batch, payload: bytes) -> int:
        seq = self._conn.execute(INSERT_BATCH, batch_values(batch)).lastrowid
        self._conn.execute(INSERT_PAYLOAD, (seq, payload))
        return seq

    def batch(self, seq: int) -> Batch | None:
        return _batch(self._conn.execute(SELECT_BATCH, (seq,)).fetchone())

    def update_batch(self, batch: Batch) -> None:
        self._conn.execute(UPDATE_BATCH, (*batch_values(batch), batch.seq))

    def drop_payload(self, seq: int) -> None:
        self._conn.execute(DELETE_PAYLOAD, (seq,))

    def add_failed_rows(self, seq: int, rows: Iterable[FailedRow]) -> None:
        self._conn.executemany(INSERT_FAILED_ROW, ((seq, r.line, r.id, r.reason, r.raw) for r in rows))

    def profiles_by(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
        return _profiles_by(self._conn, client, id_kind, ids)

    def insert_profiles(self, profiles: list[Profile]) -> None:
        self._conn.executemany(INSERT_PROFILE, map(profile_values, profiles))

    def save_profiles(self, profiles: list[Profile]) -> None:
        self._conn.executemany(UPSERT_PROFILE, map(profile_values, profiles))

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
        values = (config.client, config.auth_required, config.daily_rows, config.calls_per_minute)
        self._conn.execute(UPSERT_CLIENT, values)

    def save_token(self, token: Token) -> None:
        self._conn.execute(UPSERT_TOKEN, astuple(token))

    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._conn.execute(SELECT_TOKENS, (client,))]


class SQLiteStore(Store):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self.write(None, lambda tx: None)  # the schema exists before any reader connects

    # -- writes -------------------------------------------------------------------------------

    def write(self, client: str | None, fn: Callable[[WriteTx], T], durable: bool = True) -> T:
        # One writer thread: every write, of any client, runs one at a time.
        if self._closed:
            raise RuntimeError("store is closed")
        future: Future = Future()
        self._writes.put((fn, durable, future))
        return future.result()

    def _write_loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        # FULL: a batch acknowledged to its sender survives a power cut, not only a crash.
        conn.execute("PRAGMA journal_mode = WAL")
        # Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: a checkpoint runs inside the
        # commit that triggers it, and at the default a bulk load paid one every chunk or two.
        conn.execute("PRAGMA wal_autocheckpoint = 10000")
        self._migrate(conn)
        tx = SQLiteTx(conn)
        while (item := self._writes.get()) is not None:
            fn, durable, future = item
            try:
                # FULL: an acknowledged write survives a power cut; NORMAL, in WAL mode, still
                # survives any crash of the process.
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                conn.execute("BEGIN IMMEDIATE")
                result = fn(tx)
                conn.execute("COMMIT")
            except BaseException as e:  # the caller gets the error; the writer goes on
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                future.set_exception(e)
            else:
                future.set_result(result)
        conn.close()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")

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

    def profile(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        return _profiles_by(self._reader(), client, id_kind, [visitor_id]).get(visitor_id)

    def has_client(self, client: str) -> bool:
        return bool(self._reader().execute(SELECT_HAS_CLIENT, (client,)).fetchone()[0])

    def merged_tnt_ids(self, client: str, tnt_id: str) -> list[str]:
        return [row[0] for row in self._reader().execute(SELECT_MERGED_INTO, (client, tnt_id))]

    def client_config(self, client: str) -> ClientConfig | None:
        return _client_config(self._reader().execute(SELECT_CLIENT, (client,)).fetchone())

    def token_by_hash(self, token_hash: str) -> Token | None:
        row = self._reader().execute(SELECT_TOKEN_BY_HASH, (token_hash,)).fetchone()
        return Token(*row) if row else None

    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._reader().execute(SELECT_TOKENS, (client,))]

    def batches(self, client: str | None, limit: int, before_seq: int | None = None) -> list[Batch]:
        rows = self._reader().execute(SELECT_BATCHES, (client, before_seq or 2**62, limit))
        return [_batch(row) for row in rows]

    def batch(self, seq: int) -> Batch | None:
        return _batch(self._reader().execute(SELECT_BATCH, (seq,)).fetchone())

    @contextmanager
    def claim_next_batch(self) -> Iterator[Batch | None]:
        # The earliest unfinished batch of all: no earlier batch of its client can be unfinished.
        # Nothing marks it held, so workers in other processes may take it too.
        yield _batch(self._reader().execute(SELECT_NEXT_BATCH).fetchone())

    def batch_payload(self, seq: int) -> bytes | None:
        row = self._reader().execute(SELECT_PAYLOAD, (seq,)).fetchone()
        return row[0] if row else None

    def failed_rows(self, seq: int, limit: int | None = None, offset: int = 0) -> list[FailedRow]:
        rows = self._reader().execute(SELECT_FAILED_ROWS, (seq, -1 if limit is None else limit, offset))
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
