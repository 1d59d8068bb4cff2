"""The PostgreSQL store: several `serve` and `worker` processes, on any machines, on one database.

Writes: every write transaction first takes its client's advisory lock, so the writes of one
client run one at a time, as the rules above the store expect (a profile is read, changed and
saved whole; a batch's cursor is checked and advanced), while other clients' writes go on in
parallel. A transaction for no one client (the purge) locks each client it touches, in order.

Bulk chunks reach the profiles table in two statements at most, never one per row: new profiles
with one COPY straight into it, changed ones with one COPY into a temporary staging table and
one INSERT … SELECT … ON CONFLICT. The last of these is left running while the worker reads its
next chunk (write()'s `meanwhile`); the transaction's next statement, or its commit, waits for it.

Workers: a worker holds the batch it applies with a session advisory lock on a connection of
its own, and other workers pass that batch by. If the worker dies, even by kill -9, PostgreSQL
ends its session, which drops the lock and rolls back its unfinished chunk; the next worker
resumes from the cursor of the last committed chunk.

The schema is versioned: migrations/postgresql/NNNN_name.sql, applied in order under an
advisory lock, so processes starting at once apply each exactly once.

Connections: the pool checks each connection before handing it out and replaces a broken one
(after a restart or failover of the server, every pooled connection is dead). A failure that
passes (see PASSING_SQLSTATE_CLASSES) is raised as StoreUnavailable, a broken constraint as
StoreConflict, any other error of psycopg as StoreFailed (see _wrapped_errors). The fetch API's
reads (profile_async) have a second pool, of asyncio connections, opened on the server's event
loop: a read waiting for the database, or for a connection, holds neither that loop nor a thread.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import astuple

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

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

POOL_SIZE = 10
READ_CHECK_IDLE_SECONDS = 1.0  # profile_async checks a connection unused for longer (see _check_if_idle)
CONNECT_TIMEOUT_SECONDS = 5  # a server that does not answer is down, not slow
# SQLSTATE classes of failures that pass: connection exception (08), transaction rollback (40:
# serialization failure, deadlock), insufficient resources (53: disk full, out of memory, too
# many connections), operator intervention (57: shutdown, crash recovery), system error (58:
# I/O); and a lock not available, a read-only transaction (a failover onto a standby not yet
# promoted) and an idle transaction timed out. Not the ones in those classes that stay: a
# statement that runs past statement_timeout will again, a dropped database stays dropped, a
# missing file stays missing.
PASSING_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
PASSING_SQLSTATES = ("55P03", "25006", "25P03")
LASTING_SQLSTATES = ("57014", "57P04", "58P01")

BATCH_COLUMNS = ", ".join(BATCH_FIELDS)
_BATCH_VALUES = ", ".join(["%s"] * len(BATCH_FIELDS))
INSERT_BATCH = f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({_BATCH_VALUES}) RETURNING seq"
UPDATE_BATCH = f"UPDATE batches SET ({BATCH_COLUMNS}) = ({_BATCH_VALUES}) WHERE seq = %s"
SELECT_BATCH = "SELECT * FROM batches WHERE seq = %s"
SELECT_BATCHES = """SELECT * FROM batches WHERE (%(client)s::text IS NULL OR client = %(client)s) AND seq < %(before)s
    ORDER BY seq DESC LIMIT %(limit)s"""
# Batches a worker may start on: unfinished, and none of their client's before them unfinished.
SELECT_STARTABLE = f"""SELECT seq FROM batches b WHERE state NOT IN ('{BatchState.COMPLETE}', '{BatchState.STUCK}')
    AND NOT EXISTS (SELECT FROM batches e WHERE e.client = b.client AND e.seq < b.seq
                    AND e.state NOT IN ('{BatchState.COMPLETE}', '{BatchState.STUCK}'))
    ORDER BY seq LIMIT 100"""
SELECT_ROWS_SINCE = "SELECT coalesce(sum(size), 0) FROM batches WHERE client = %s AND accepted_ms >= %s"
SELECT_LAST_BATCH_SEQ = "SELECT coalesce(max(seq), 0) FROM batches"
INSERT_PAYLOAD = "INSERT INTO batch_payloads (seq, payload) VALUES (%s, %b)"  # %b: sent as bytes, not as hex text
SELECT_PAYLOAD = "SELECT payload FROM batch_payloads WHERE seq = %s"
DELETE_PAYLOAD = "DELETE FROM batch_payloads WHERE seq = %s"
COPY_FAILED_ROWS = "COPY failed_rows (seq, line, id, reason, raw, raw_length) FROM STDIN"
SELECT_FAILED_ROWS = """SELECT line, id, reason, raw, raw_length FROM failed_rows WHERE seq = %s AND line > %s
    ORDER BY line LIMIT %s OFFSET %s"""
SELECT_QUEUE_STATE = f"""SELECT count(*), min(accepted_ms), count(failing_since_ms) FROM batches
    WHERE state NOT IN ('{BatchState.COMPLETE}', '{BatchState.STUCK}')"""
# Never the newest batch: its seq orders single writes (profiles.single_write_order).
SELECT_PURGEABLE = """SELECT seq FROM batches WHERE finished_ms < %s AND seq < (SELECT max(seq) FROM batches)
    ORDER BY finished_ms LIMIT %s"""
IDEMPOTENCY_KEY_COLUMNS = "client, key, digest, seq, accepted_ms"
SELECT_IDEMPOTENCY_KEY = f"SELECT {IDEMPOTENCY_KEY_COLUMNS} FROM idempotency_keys WHERE client = %s AND key = %s"
UPSERT_IDEMPOTENCY_KEY = f"""INSERT INTO idempotency_keys ({IDEMPOTENCY_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (client, key) DO UPDATE SET digest = excluded.digest, seq = excluded.seq,
    accepted_ms = excluded.accepted_ms"""
DELETE_BATCHES = (
    "DELETE FROM failed_rows WHERE seq = ANY(%s)",
    "DELETE FROM idempotency_keys WHERE seq = ANY(%s)",
    "DELETE FROM webhook_deliveries WHERE seq = ANY(%s)",
    "DELETE FROM batch_payloads WHERE seq = ANY(%s)",
    "DELETE FROM batches WHERE seq = ANY(%s)",
)
DELETE_FAILED_ROWS_OF = """DELETE FROM failed_rows WHERE seq IN (SELECT seq FROM batches WHERE client = %s)
    AND id = ANY(%s)"""


# Each takes (client, the ids as one JSON array) and returns (id asked for, profile columns...).
# The LATERAL subquery with its LIMIT makes every id one index probe; a plain join lets the
# planner hash the client's whole table for a few thousand ids. JSON, because orjson writes
# the array in C where psycopg builds a text[] parameter in Python.
def _select_by(columns: str) -> dict[str, str]:
    asked = f"""SELECT asked, p.* FROM json_array_elements_text(%(ids)s::json) AS asked
        CROSS JOIN LATERAL (SELECT {columns} FROM profiles WHERE client = %(client)s AND"""
    return {
        "tntId": f"""{asked} tnt_id = coalesce((SELECT m.into_tnt_id FROM merged_ids m
            WHERE m.client = %(client)s AND m.tnt_id = asked), asked) LIMIT 1) p""",
        "thirdPartyId": f"{asked} third_party_id = asked LIMIT 1) p",
        "marketingCloudVisitorId": f"{asked} mcvid = asked LIMIT 1) p",
    }


SELECT_PROFILES_BY = _select_by(PROFILE_COLUMNS)
# The row's address is its ctid: no other transaction can move the row while this one holds its
# client's lock, and an UPDATE by ctid finds it without an index.
SELECT_STORED_BY = _select_by("ctid::text, modified_ms, active_ms, attributes")
SELECT_HAS_CLIENT = "SELECT EXISTS (SELECT FROM profiles WHERE client = %s)"
# Keyset paging on the primary key (client, tnt_id): each page is one range scan of the index.
# tnt_id is COLLATE "C": byte order, as in SQLite.
SELECT_PROFILES_PAGE = {
    kind: f"""SELECT {PROFILE_COLUMNS} FROM profiles WHERE client = %(client)s AND tnt_id > %(after)s {condition}
        ORDER BY tnt_id LIMIT %(limit)s"""
    for kind, condition in WITH_THIRD_PARTY_ID.items()
}
SELECT_ATTRIBUTE_NAMES = {
    kind: f"""SELECT DISTINCT json_object_keys(attributes::json) FROM profiles WHERE client = %(client)s {condition}
        AND active_ms >= %(active)s AND modified_ms >= %(modified)s"""
    for kind, condition in WITH_THIRD_PARTY_ID.items()
}
# The staging table lives as long as its connection (made with it) and is emptied by every commit.
CREATE_STAGING = """CREATE TEMPORARY TABLE profiles_staging
    (LIKE profiles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
COPY_STAGING = f"COPY profiles_staging ({PROFILE_COLUMNS}, active_hour) FROM STDIN (FORMAT BINARY)"
MERGE_STAGING = f"""
INSERT INTO profiles ({PROFILE_COLUMNS}, active_hour) SELECT {PROFILE_COLUMNS}, active_hour FROM profiles_staging
ON CONFLICT (client, tnt_id) DO UPDATE SET
    created_ms = excluded.created_ms,
    modified_ms = excluded.modified_ms,
    third_party_id = excluded.third_party_id,
    mcvid = excluded.mcvid,
    attributes = excluded.attributes,
    active_ms = excluded.active_ms,
    active_hour = excluded.active_hour
"""
CREATE_CHANGES = """CREATE TEMPORARY TABLE profile_changes (address tid NOT NULL, modified_ms int8 NOT NULL,
    attributes text NOT NULL, active_ms int8 NOT NULL, active_hour int8 NOT NULL) ON COMMIT DELETE ROWS"""
COPY_CHANGES = "COPY profile_changes (modified_ms, attributes, active_ms, address, active_hour) FROM STDIN"
UPDATE_CHANGED = """UPDATE profiles p SET modified_ms = c.modified_ms, attributes = c.attributes,
    active_ms = c.active_ms, active_hour = c.active_hour FROM profile_changes c WHERE p.ctid = c.address"""
# In text format: PostgreSQL inserts such rows as they arrive, while the worker reads on; binary
# rows it held until the COPY ended (measured: waiting for the end took as long after a pause).
COPY_PROFILES = f"COPY profiles ({PROFILE_COLUMNS}, active_hour) FROM STDIN"
# Binary COPY into staging: PostgreSQL reads numbers as they are instead of parsing text. The
# types of PROFILE_COLUMNS and active_hour, in order.
PROFILE_COPY_TYPES = ["text", "text", "int8", "int8", "text", "text", "text", "int8", "int8"]
DELETE_PROFILE = "DELETE FROM profiles WHERE client = %s AND tnt_id = %s"
REPOINT_MERGED_IDS = "UPDATE merged_ids SET into_tnt_id = %s WHERE client = %s AND into_tnt_id = %s"
INSERT_MERGED_ID = """INSERT INTO merged_ids (client, tnt_id, into_tnt_id) VALUES (%s, %s, %s)
    ON CONFLICT (client, tnt_id) DO UPDATE SET into_tnt_id = excluded.into_tnt_id"""
DELETE_MERGED_INTO = "DELETE FROM merged_ids WHERE client = %s AND into_tnt_id = ANY(%s)"
SELECT_MERGED_INTO = "SELECT tnt_id FROM merged_ids WHERE client = %s AND into_tnt_id = %s ORDER BY tnt_id"
SELECT_INACTIVE = """SELECT client, tnt_id FROM profiles WHERE active_hour <= %(hour)s AND active_ms < %(before)s
    LIMIT %(limit)s"""
DELETE_INACTIVE = """DELETE FROM profiles WHERE client = %s AND tnt_id = ANY(%s) AND active_ms < %s
    RETURNING tnt_id"""
CLIENT_COLUMNS = "client, auth_required, daily_rows, calls_per_minute, webhook_url, webhook_secret"
SELECT_CLIENT = f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client = %s"
UPSERT_CLIENT = f"""INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (client) DO UPDATE SET auth_required = excluded.auth_required, daily_rows = excluded.daily_rows,
    calls_per_minute = excluded.calls_per_minute, webhook_url = excluded.webhook_url,
    webhook_secret = excluded.webhook_secret"""
DELIVERY_COLUMNS = """event_id, client, seq, event, body, created_ms, attempts, next_attempt_ms, delivered_ms,
    last_status, last_error"""
INSERT_DELIVERY = f"""INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS})
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
# SKIP LOCKED: two senders claiming at once take different deliveries instead of waiting.
CLAIM_DELIVERIES = f"""UPDATE webhook_deliveries SET next_attempt_ms = %(until)s WHERE event_id IN (
    SELECT event_id FROM webhook_deliveries WHERE next_attempt_ms <= %(now)s
    ORDER BY next_attempt_ms LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING {DELIVERY_COLUMNS}"""
UPDATE_DELIVERY = """UPDATE webhook_deliveries SET attempts = %s, next_attempt_ms = %s, delivered_ms = %s,
    last_status = %s, last_error = %s WHERE event_id = %s"""
SELECT_DELIVERIES = f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE client = %s
    ORDER BY created_ms DESC, seq DESC LIMIT %s"""
TOKEN_COLUMNS = "id, client, hash, created_ms, expires_ms, revoked_ms"
SELECT_TOKEN_BY_HASH = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = %s"
SELECT_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE client = %s ORDER BY created_order"
UPSERT_TOKEN = f"""INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms, revoked_ms = excluded.revoked_ms"""

# Advisory lock keys are (namespace, key) pairs; the namespaces include the schema, so stores in
# different schemas of one database (the test suite's) never block each other.
LOCK_NAMESPACES = """SELECT hashtext('profilestore clients ' || s), hashtext('profilestore batches ' || s)
    FROM current_schema() s"""
# Values written in, not parameters: a write transaction's opening statements are sent together
# (the simple query protocol takes several when they carry none), so that a chunk of a batch is
# a few round trips in all.
LOCK_CLIENT = sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext({}))")
BEGIN = "BEGIN"
BEGIN_REDOABLE = "BEGIN; SET LOCAL synchronous_commit = off"
TRY_HOLD_BATCH = "SELECT pg_try_advisory_lock(%s, %s)"
RELEASE_BATCH = "SELECT pg_advisory_unlock(%s, %s)"

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS profilestore_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(hashtext('profilestore migrations ' || current_schema()))"
MIGRATIONS_TABLE_EXISTS = "SELECT to_regclass('profilestore_migrations') IS NOT NULL"
SELECT_APPLIED = "SELECT version FROM profilestore_migrations"
INSERT_APPLIED = "INSERT INTO profilestore_migrations (version, name) VALUES (%s, %s)"


class _Migrations(migrations.Database):
    """The schema, for the migration runner: the profilestore_migrations table records each
    migration applied, and each is applied in its own transaction under an advisory lock, so
    that processes starting at once apply each exactly once."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn

    @contextmanager
    def each_migration(self) -> Iterator[None]:
        with self._conn.transaction():
            self._conn.execute(LOCK_MIGRATIONS)  # waits for another process migrating
            self._conn.execute(MIGRATIONS_TABLE)
            yield

    def applied(self) -> set[int]:
        if not _row(self._conn.execute(MIGRATIONS_TABLE_EXISTS))[0]:
            return set()
        return {row[0] for row in self._conn.execute(SELECT_APPLIED)}

    def run(self, script: str) -> None:
        self._conn.execute(script)

    def record(self, migration: migrations.Migration) -> None:
        self._conn.execute(INSERT_APPLIED, (migration.version, migration.name))


def migrate(url: str) -> list[str]:
    """Apply the migrations the database lacks, each in its own transaction; their names."""
    with _connect(url) as conn, _opening_errors("migrate"):
        if _row(conn.execute("SELECT current_schema()"))[0] is None:
            raise StoreError("no schema of the search_path exists in the database; create it first")
        return migrations.migrate(_Migrations(conn))


@contextmanager
def _opening_errors(doing: str) -> Iterator[None]:
    """Any error of the driver while opening the store as StoreError, which says what failed
    (say, a user that may not create tables), instead of a traceback."""
    try:
        yield
    except psycopg.Error as e:
        raise StoreError(f"cannot {doing} the PostgreSQL store: {_cause(e)}") from None


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.OperationalError as e:
        raise StoreError(f"cannot connect to PostgreSQL: {e}".strip()) from None


def _passes(e: psycopg.Error) -> bool:
    """Whether the failure passes: the server or the connection, not the statement."""
    if e.sqlstate is None:  # from libpq or the pool: refused, lost or closed connection, no connection in time
        return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))
    if e.sqlstate in LASTING_SQLSTATES:
        return False
    return e.sqlstate[:2] in PASSING_SQLSTATE_CLASSES or e.sqlstate in PASSING_SQLSTATES


def _cause(e: psycopg.Error) -> str:
    if isinstance(e, PoolTimeout):
        return f"no database connection was free or could be made in time ({e})"
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return f"{first} ({e.sqlstate})" if e.sqlstate else first


@contextmanager
def _wrapped_errors() -> Iterator[None]:
    """psycopg's errors as the store's (see store.base): those that pass (see _passes) as
    StoreUnavailable, a broken constraint (IntegrityError, UniqueViolation...) as StoreConflict,
    any other as StoreFailed."""
    try:
        yield
    except psycopg.Error as e:
        if _passes(e):
            raise StoreUnavailable(_cause(e)) from e
        kind = StoreConflict if isinstance(e, psycopg.IntegrityError) else StoreFailed
        raise kind(_cause(e)) from e


def _row(cursor: psycopg.Cursor) -> tuple:
    """The one row of a statement that always returns one (an aggregate, RETURNING, a function)."""
    row = cursor.fetchone()
    assert row is not None, "the statement returned no row"
    return row


def _roll_back(conn: psycopg.Connection) -> None:
    """Roll back after an error without hiding it; a connection too broken for that is one the
    pool drops when it comes back."""
    try:
        conn.rollback()
    except psycopg.Error:
        pass


def _create_staging(conn: psycopg.Connection) -> None:
    conn.execute(CREATE_STAGING)
    conn.execute(CREATE_CHANGES)


def _copy_rows(profiles: list[Profile]) -> Iterator[tuple]:
    """The profiles as rows of PROFILE_COLUMNS and active_hour, as both COPYs take them."""
    return ((*profile_values(p), p.active_ms // HOUR_MS) for p in profiles)


def _asked(client: str, ids: Iterable[str]) -> dict[str, str]:
    """The parameters of SELECT_PROFILES_BY and SELECT_STORED_BY."""
    return {"client": client, "ids": orjson.dumps(list(ids)).decode()}


def _profiles_by(conn: psycopg.Connection, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
    return profiles_by_asked(conn.execute(SELECT_PROFILES_BY[id_kind], _asked(client, ids)))


@wrapping_errors(_wrapped_errors)
class PostgresTx(WriteTx):
    def __init__(self, conn: psycopg.Connection, client_namespace: int):
        self._conn = conn
        self._client_namespace = client_namespace
        # The last bulk write, left running while the caller works on (see WriteTx): a COPY
        # whose rows are all sent, or a pipeline that holds the merge of the staging table.
        self._running = ExitStack()

    @property
    def _db(self) -> psycopg.Connection:
        """The connection, once the last bulk write has finished."""
        self._running.close()
        return self._conn

    def end(self, error: BaseException | None = None) -> None:
        """Wait for the last bulk write, or, after an error, abandon it."""
        if error is None:
            self._running.close()
        else:
            self._running.__exit__(type(error), error, error.__traceback__)

    def lock_client(self, client: str) -> None:
        self._db.execute(LOCK_CLIENT.format(self._client_namespace, client))

    def insert_batch(self, batch: Batch, payload: bytes | bytearray) -> int:
        seq = _row(self._db.execute(INSERT_BATCH, batch_values(batch)))[0]
        self._db.execute(INSERT_PAYLOAD, (seq, payload))
        return seq

    def batch(self, seq: int) -> Batch | None:
        return self._db.cursor(row_factory=class_row(Batch)).execute(SELECT_BATCH, (seq,)).fetchone()

    def update_batch(self, batch: Batch) -> None:
        self._db.execute(UPDATE_BATCH, (*batch_values(batch), batch.seq))

    def drop_payload(self, seq: int) -> None:
        self._db.execute(DELETE_PAYLOAD, (seq,))

    def add_failed_rows(self, seq: int, rows: Iterable[FailedRow]) -> None:
        with self._db.cursor().copy(COPY_FAILED_ROWS) as copy:
            for r in rows:
                copy.write_row((seq, r.line, r.id, r.reason, r.raw, r.raw_length))

    def purge_batches(self, finished_before_ms: int, limit: int) -> int:
        seqs = [row[0] for row in self._db.execute(SELECT_PURGEABLE, (finished_before_ms, limit))]
        for statement in DELETE_BATCHES:
            self._db.execute(statement, (seqs,))
        return len(seqs)

    def idempotency_key(self, client: str, key: str) -> IdempotencyKey | None:
        row = self._db.execute(SELECT_IDEMPOTENCY_KEY, (client, key)).fetchone()
        return IdempotencyKey(*row) if row else None

    def save_idempotency_key(self, key: IdempotencyKey) -> None:
        self._db.execute(UPSERT_IDEMPOTENCY_KEY, astuple(key))

    def profiles_by(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
        return _profiles_by(self._db, client, id_kind, ids)

    def insert_profiles(self, profiles: list[Profile]) -> None:
        if not profiles:
            return
        copy = self._running.enter_context(self._db.cursor().copy(COPY_PROFILES))
        for row in _copy_rows(profiles):
            copy.write_row(row)

    def save_profiles(self, profiles: list[Profile]) -> None:
        if not profiles:
            return
        cursor = self._db.cursor()
        with cursor.copy(COPY_STAGING) as copy:
            copy.set_types(PROFILE_COPY_TYPES)
            for row in _copy_rows(profiles):
                copy.write_row(row)
        self._running.enter_context(self._conn.pipeline())  # sent now, its result awaited later
        cursor.execute(MERGE_STAGING)

    def stored_profiles(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, StoredProfile]:
        rows = self._db.execute(SELECT_STORED_BY[id_kind], _asked(client, ids))
        return {asked: StoredProfile(*stored) for asked, *stored in rows}

    def write_profile_rows(self, new: list[tuple], changed: list[tuple]) -> None:
        if new:
            copy = self._running.enter_context(self._db.cursor().copy(COPY_PROFILES))
            for row in new:
                copy.write_row((*row, row[7] // HOUR_MS))
        if changed:
            cursor = self._db.cursor()  # once the COPY of the new ones has ended
            with cursor.copy(COPY_CHANGES) as copy:
                for row in changed:
                    copy.write_row((*row, row[2] // HOUR_MS))
            self._running.enter_context(self._conn.pipeline())  # sent now, its result awaited later
            cursor.execute(UPDATE_CHANGED)

    def retire_profile(self, client: str, tnt_id: str, into_tnt_id: str) -> None:
        self._db.execute(DELETE_PROFILE, (client, tnt_id))
        self._db.execute(REPOINT_MERGED_IDS, (into_tnt_id, client, tnt_id))
        self._db.execute(INSERT_MERGED_ID, (client, tnt_id, into_tnt_id))

    def delete_profile(self, client: str, tnt_id: str) -> None:
        self._db.execute(DELETE_PROFILE, (client, tnt_id))
        self._db.execute(DELETE_MERGED_INTO, (client, [tnt_id]))

    def purge_inactive(self, active_before_ms: int, limit: int) -> int:
        query = {"hour": active_before_ms // HOUR_MS, "before": active_before_ms, "limit": limit}
        by_client: dict[str, list[str]] = {}
        for client, tnt_id in self._db.execute(SELECT_INACTIVE, query):
            by_client.setdefault(client, []).append(tnt_id)
        purged = 0
        for client in sorted(by_client):  # one order for every purging worker: no deadlock
            self.lock_client(client)
            # Checked again under the lock: a write may have just made the profile active.
            doomed = (client, by_client[client], active_before_ms)
            deleted = [row[0] for row in self._db.execute(DELETE_INACTIVE, doomed)]
            self._db.execute(DELETE_MERGED_INTO, (client, deleted))
            purged += len(deleted)
        return purged

    def delete_failed_rows(self, client: str, ids: Iterable[str]) -> int:
        return self._db.execute(DELETE_FAILED_ROWS_OF, (client, list(ids))).rowcount

    def last_batch_seq(self) -> int:
        return _row(self._db.execute(SELECT_LAST_BATCH_SEQ))[0]

    def rows_accepted_since(self, client: str, since_ms: int) -> int:
        return _row(self._db.execute(SELECT_ROWS_SINCE, (client, since_ms)))[0]

    def save_client(self, config: ClientConfig) -> None:
        self._db.execute(UPSERT_CLIENT, astuple(config))

    def client_config(self, client: str) -> ClientConfig | None:
        row = self._db.execute(SELECT_CLIENT, (client,)).fetchone()
        return ClientConfig(*row) if row else None

    def insert_delivery(self, delivery: WebhookDelivery) -> None:
        self._db.execute(INSERT_DELIVERY, astuple(delivery))

    def claim_deliveries(self, now_ms: int, until_ms: int, limit: int) -> list[WebhookDelivery]:
        rows = self._db.execute(CLAIM_DELIVERIES, {"until": until_ms, "now": now_ms, "limit": limit}).fetchall()
        return sorted((WebhookDelivery(*row) for row in rows), key=lambda d: d.created_ms)

    def update_delivery(self, d: WebhookDelivery) -> None:
        values = (d.attempts, d.next_attempt_ms, d.delivered_ms, d.last_status, d.last_error, d.event_id)
        self._db.execute(UPDATE_DELIVERY, values)

    def save_token(self, token: Token) -> None:
        self._db.execute(UPSERT_TOKEN, astuple(token))

    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._db.execute(SELECT_TOKENS, (client,))]


class PostgresStore(Store):
    def __init__(self, url: str, run_migrations: bool = True, timeout: float = 5.0):
        """timeout: how long an operation waits for a connection before StoreUnavailable."""
        if run_migrations:
            migrate(url)
        with _connect(url) as conn, _opening_errors("open"):
            pending = [migration.version for migration in migrations.pending(_Migrations(conn))]
            if pending:
                raise StoreError(f"the database lacks migrations {pending}: run `profilestore migrate`")
            self._client_namespace, self._batch_namespace = _row(conn.execute(LOCK_NAMESPACES))
        self._pool = ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=True, name="profilestore", timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            configure=_create_staging, check=ConnectionPool.check_connection,
        )  # fmt: skip
        self._url, self._timeout = url, timeout
        self._reads: AsyncConnectionPool | None = None  # profile_async's, opened on its event loop
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = weakref.WeakKeyDictionary()
        self._closed = False

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with _wrapped_errors(), self._pool.connection() as conn:
            yield conn

    # -- writes -------------------------------------------------------------------------------

    def write(
        self, client: str | None, fn: Callable[[WriteTx], T], durable: bool = True,
        meanwhile: Callable[[], object] | None = None,
    ) -> T:  # fmt: skip
        with self._connection() as conn:
            conn.execute(self._opening(client, durable))
            tx = PostgresTx(conn, self._client_namespace)
            try:
                result = fn(tx)
                if meanwhile is not None:
                    meanwhile()  # while the server may still write fn's last profiles
                tx.end()
            except BaseException as error:
                tx.end(error)
                _roll_back(conn)
                raise
            conn.commit()
            return result

    def _opening(self, client: str | None, durable: bool) -> sql.Composed:
        """BEGIN, the commit mode and the client's lock, as one statement text."""
        statements: list[sql.Composable] = [sql.SQL(BEGIN if durable else BEGIN_REDOABLE)]
        if client is not None:
            statements.append(LOCK_CLIENT.format(self._client_namespace, client))
        return sql.SQL("; ").join(statements)

    # -- the worker's batch -------------------------------------------------------------------

    @contextmanager
    def claim_next_batch(self) -> Iterator[Batch | None]:
        with self._connection() as conn:
            batch = self._hold_startable(conn)
            try:
                yield batch
            finally:
                if batch is not None:
                    self._release(conn, batch.seq)

    def _hold_startable(self, conn: psycopg.Connection) -> Batch | None:
        for (seq,) in conn.execute(SELECT_STARTABLE).fetchall():
            if not _row(conn.execute(TRY_HOLD_BATCH, (self._batch_namespace, seq)))[0]:
                continue  # another worker has it
            batch = conn.cursor(row_factory=class_row(Batch)).execute(SELECT_BATCH, (seq,)).fetchone()
            if batch is not None and not batch.state.finished:
                return batch
            conn.execute(RELEASE_BATCH, (self._batch_namespace, seq))  # finished meanwhile
        return None

    def _release(self, conn: psycopg.Connection, seq: int) -> None:
        try:
            conn.execute(RELEASE_BATCH, (self._batch_namespace, seq))
        except psycopg.Error:
            conn.close()  # the lock goes with the session, lost already or ended here; the pool drops it

    # -- reads --------------------------------------------------------------------------------

    def profile(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        with self._connection() as conn:
            return _profiles_by(conn, client, id_kind, [visitor_id]).get(visitor_id)

    async def profile_async(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        with _wrapped_errors():
            async with (await self._async_reads()).connection() as conn:
                rows = await (await conn.execute(SELECT_PROFILES_BY[id_kind], _asked(client, [visitor_id]))).fetchall()
        return profiles_by_asked(rows).get(visitor_id)

    async def _async_reads(self) -> AsyncConnectionPool:
        """profile_async's pool, opened on the running event loop by the first call (opening it
        again is safe, and waits for the first)."""
        if self._reads is None:
            self._reads = AsyncConnectionPool(
                self._url, min_size=1, max_size=POOL_SIZE, open=False, name="profilestore-reads",
                timeout=self._timeout, kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
                configure=self._note_use, check=self._check_if_idle,
            )  # fmt: skip
        if self._reads.closed:
            await self._reads.open()
        return self._reads

    async def _check_if_idle(self, conn: psycopg.AsyncConnection) -> None:
        """The reads pool's check of a connection it hands out, if not handed out (or made) in
        the last READ_CHECK_IDLE_SECONDS: a dead one (after a restart or failover of the server)
        is replaced unseen. Checking every one, as the other pool does, costs each fetch a second
        round trip: a quarter of the fetch rate (bench/reads, in turn). A connection used within
        the last second that has died since fails one fetch, with StoreUnavailable, and is
        replaced."""
        now = time.monotonic()
        if now - self._last_used.get(conn, 0.0) > READ_CHECK_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)
        self._last_used[conn] = now

    async def _note_use(self, conn: psycopg.AsyncConnection) -> None:
        """A new connection of the reads pool counts as just used: it has just answered."""
        self._last_used[conn] = time.monotonic()

    def _one(self, query: str, params: tuple = ()):
        with self._connection() as conn:
            return conn.execute(query, params).fetchone()

    def _all(self, query: str, params: tuple | dict, row_factory=None) -> list:
        with self._connection() as conn:
            cursor = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
            return cursor.execute(query, params).fetchall()

    def profile_rows(
        self, client: str, after_tnt_id: str | None, limit: int, with_third_party_id: bool | None = None
    ) -> list[tuple]:
        query = {"client": client, "after": after_tnt_id or "", "limit": limit}
        return self._all(SELECT_PROFILES_PAGE[with_third_party_id], query)

    def attribute_names(
        self, client: str, with_third_party_id: bool | None, active_since_ms: int, modified_since_ms: int
    ) -> set[str]:
        query = {"client": client, "active": active_since_ms, "modified": modified_since_ms}
        return {row[0] for row in self._all(SELECT_ATTRIBUTE_NAMES[with_third_party_id], query)}

    def has_client(self, client: str) -> bool:
        return self._one(SELECT_HAS_CLIENT, (client,))[0]

    def merged_tnt_ids(self, client: str, tnt_id: str) -> list[str]:
        return [row[0] for row in self._all(SELECT_MERGED_INTO, (client, tnt_id))]

    def client_config(self, client: str) -> ClientConfig | None:
        row = self._one(SELECT_CLIENT, (client,))
        return ClientConfig(*row) if row else None

    def token_by_hash(self, token_hash: str) -> Token | None:
        row = self._one(SELECT_TOKEN_BY_HASH, (token_hash,))
        return Token(*row) if row else None

    def tokens(self, client: str) -> list[Token]:
        return [Token(*row) for row in self._all(SELECT_TOKENS, (client,))]

    def batches(self, client: str | None, limit: int, before_seq: int | None = None) -> list[Batch]:
        query = {"client": client, "before": before_seq or 2**62, "limit": limit}
        return self._all(SELECT_BATCHES, query, class_row(Batch))

    def batch(self, seq: int) -> Batch | None:
        found = self._all(SELECT_BATCH, (seq,), class_row(Batch))
        return found[0] if found else None

    def queue_state(self) -> QueueState:
        return QueueState(*self._one(SELECT_QUEUE_STATE))

    def deliveries(self, client: str, limit: int) -> list[WebhookDelivery]:
        return [WebhookDelivery(*row) for row in self._all(SELECT_DELIVERIES, (client, limit))]

    def batch_payload(self, seq: int) -> bytes | None:
        with self._connection() as conn:
            row = conn.cursor(binary=True).execute(SELECT_PAYLOAD, (seq,)).fetchone()
        return row[0] if row else None

    def failed_rows(self, seq: int, limit: int | None = None, offset: int = 0, after_line: int = 0) -> list[FailedRow]:
        return [FailedRow(*row) for row in self._all(SELECT_FAILED_ROWS, (seq, after_line, limit, offset))]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    async def close_async(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        self.close()
