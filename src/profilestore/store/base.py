"""The store interface: the handful of named operations the rules above it need.

A store only keeps and finds things; every rule (what an empty cell means, v1 versus v2,
ordering, counting) lives in the service modules that call it. Each backend implements
`Store` (reads, and `write` to run one transaction) and `WriteTx` (the operations allowed
inside that transaction), and turns its driver's errors into the ones named here, so that
nothing above the store sees a driver (`tests/test_store.py` holds every backend to this).

Errors. Opening a store raises StoreError. Every operation of an open store may raise
StoreUnavailable (a failure that passes) or StoreFailed (any other error of the database); one
that writes may also raise StoreConflict. An error of write()'s own functions (fn, meanwhile)
reaches its caller as they raised it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import wraps
from typing import NamedTuple, TypeVar

from ..model import Batch, ClientConfig, FailedRow, IdempotencyKey, Profile, QueueState, Token, WebhookDelivery

T = TypeVar("T")
C = TypeVar("C", bound=type)


class StoreError(Exception):
    """The store cannot be opened: a bad URL, a missing driver, an unreachable server, or a
    schema that is behind."""


class _Failure(Exception):
    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause  # what failed, in a few words, for logs and error messages


class StoreUnavailable(_Failure):
    """The store cannot do this now, for a reason that passes: the database cannot be reached
    or its connection was lost, the disk is full, the database is locked by another process
    for longer than the busy timeout, or the transaction lost a conflict with another. Nothing
    of the operation was kept, except that a write whose connection was lost during COMMIT may
    have been: a caller redoes it only where that is safe. Try again later."""


class StoreConflict(_Failure):
    """A write broke a rule of the store's schema: a uniqueness rule (a tntId, thirdPartyId or
    marketingCloudVisitorId already on a profile of the client, a token's hash, a batch's failed
    row of that line), or another integrity rule. Nothing of the transaction was kept."""


class StoreFailed(_Failure):
    """The database failed on the operation for a reason that does not pass and is no conflict
    (a table missing, a value out of range, a bug). Nothing of a write that fails so was kept."""


def wrapped_in(errors: Callable[[], AbstractContextManager[object]]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A method decorator for a backend: the method runs inside errors(), the backend's context
    manager that turns its driver's errors into the ones above."""

    def wrapped(method: Callable[..., T]) -> Callable[..., T]:
        @wraps(method)
        def inside(*args, **kwargs) -> T:
            with errors():
                return method(*args, **kwargs)

        return inside

    return wrapped


def wrapping_errors(errors: Callable[[], AbstractContextManager[object]]) -> Callable[[C], C]:
    """A class decorator for a backend: each public method of the class runs inside errors()
    (see wrapped_in)."""
    wrapped = wrapped_in(errors)

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if callable(member) and not name.startswith("_"):
                setattr(cls, name, wrapped(member))
        return cls

    return decorate


class StoredProfile(NamedTuple):
    """A profile as the lean bulk merge reads it (see bulkmerge.py): where the store finds its row
    again in the same transaction, its times, and its attributes as the stored JSON text."""

    address: object  # the store's own: a rowid, a ctid
    modified_ms: int
    active_ms: int
    attributes: str


class WriteTx(ABC):
    """Operations inside one write transaction (see Store.write); all of them commit together
    or not at all. Each runs on the thread fn runs on, sees what the transaction wrote before it,
    and raises the store's errors (see the module), after which fn lets the error pass: the
    transaction can only roll back.

    save_profiles and insert_profiles may return while the database is still writing: the
    transaction's next operation, or its commit, waits for that (and raises its error, a
    StoreConflict for instance, which rolls the whole transaction back). On PostgreSQL, what
    write()'s `meanwhile` does runs in that time."""

    @abstractmethod
    def insert_batch(self, batch: Batch, payload: bytes | bytearray) -> int:
        """Store a new batch and its bytes durably; return its seq (batch.seq is ignored), greater
        than every seq before and never reused."""

    @abstractmethod
    def batch(self, seq: int) -> Batch | None:
        """The batch as of this transaction, or None."""

    @abstractmethod
    def update_batch(self, batch: Batch) -> None:
        """Save every field of the batch (its state, cursor and counters) over the stored batch
        of its seq; nothing if there is none."""

    @abstractmethod
    def drop_payload(self, seq: int) -> None:
        """Forget the bytes of a batch that needs them no more; nothing if they are gone."""

    @abstractmethod
    def add_failed_rows(self, seq: int, rows: Iterable[FailedRow]) -> None:
        """Record rows of a batch that failed, with their reasons; StoreConflict for a line
        already recorded."""

    @abstractmethod
    def idempotency_key(self, client: str, key: str) -> IdempotencyKey | None:
        """The client's Idempotency-Key of this text, as last saved, or None."""

    @abstractmethod
    def save_idempotency_key(self, key: IdempotencyKey) -> None:
        """Insert or replace the client's Idempotency-Key of this text."""

    @abstractmethod
    def purge_batches(self, finished_before_ms: int, limit: int) -> int:
        """Delete up to `limit` batches (of any client) that finished, complete or stuck, before
        the time (finished_ms earlier than it), those that finished first first, with their
        failed rows, bytes, Idempotency-Keys and webhook deliveries, but never the newest batch of all, whose seq orders later single
        writes (see profiles.single_write_order); how many."""

    @abstractmethod
    def profiles_by(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
        """The existing profiles found by these ids of one kind (see model.ID_KINDS), keyed by the
        id asked for; an id found on none is left out. A tntId merged into another profile finds
        that one. Ids that lead to the same profile share one Profile object."""

    @abstractmethod
    def save_profiles(self, profiles: list[Profile]) -> None:
        """Insert or replace these profiles whole (ids, timestamps and attributes), by client and
        tntId, each at most once in the list. StoreConflict if a thirdPartyId or
        marketingCloudVisitorId is another profile's, maybe only at the next operation."""

    @abstractmethod
    def insert_profiles(self, profiles: list[Profile]) -> None:
        """Insert profiles known to be new: their tntIds were just made, and their other ids
        were looked up in this transaction and found on no profile. A store may write them
        faster than save_profiles can, since nothing stored needs replacing. StoreConflict if one
        of their ids is on a profile already, maybe only at the next operation."""

    @abstractmethod
    def stored_profiles(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, StoredProfile]:
        """The profiles profiles_by would find, as stored, keyed by the id asked for; ids that
        lead to the same profile give the same address."""

    @abstractmethod
    def write_profile_rows(self, new: list[tuple], changed: list[tuple]) -> None:
        """Insert the profiles of `new`, rows of store.rows.PROFILE_COLUMNS, by insert_profiles's
        rules; and save (modified_ms, attributes JSON, active_ms) over the profiles of `changed`,
        rows of those and the address stored_profiles gave in this transaction, each at most
        once. May return while the database is still writing, as insert_profiles may."""

    @abstractmethod
    def retire_profile(self, client: str, tnt_id: str, into_tnt_id: str) -> None:
        """Delete a profile merged into another; its tntId (and every tntId merged into it
        before) resolves to into_tnt_id from now on."""

    @abstractmethod
    def delete_profile(self, client: str, tnt_id: str) -> None:
        """Delete a profile and every tntId merged into it."""

    @abstractmethod
    def purge_inactive(self, active_before_ms: int, limit: int) -> int:
        """Delete up to `limit` profiles (of any client) inactive since before the time (active_ms
        earlier than it), with the tntIds merged into them; how many were deleted. PostgreSQL
        takes the lock of each client it deletes from, in order of client."""

    @abstractmethod
    def delete_failed_rows(self, client: str, ids: Iterable[str]) -> int:
        """Forget the failed rows of the client's batches keyed by these ids; how many."""

    @abstractmethod
    def last_batch_seq(self) -> int:
        """The seq of the latest accepted batch, 0 if none."""

    @abstractmethod
    def rows_accepted_since(self, client: str, since_ms: int) -> int:
        """Data rows (sizes) of the client's batches, still stored, accepted at or after the time."""

    @abstractmethod
    def save_client(self, config: ClientConfig) -> None:
        """Insert or replace a client's settings."""

    @abstractmethod
    def client_config(self, client: str) -> ClientConfig | None:
        """The client's own settings as of this transaction, or None if it has none."""

    @abstractmethod
    def insert_delivery(self, delivery: WebhookDelivery) -> None:
        """Store a new webhook delivery; StoreConflict if its event id is stored already."""

    @abstractmethod
    def claim_deliveries(self, now_ms: int, until_ms: int, limit: int) -> list[WebhookDelivery]:
        """Up to `limit` deliveries (of any client) due at now_ms (next_attempt_ms at or before
        it), earliest due first, each with its next_attempt_ms moved to until_ms and saved so, as
        returned: another sender passes them by until then. On PostgreSQL, rows another
        transaction has claimed and not yet committed are skipped (FOR UPDATE SKIP LOCKED), so
        two senders never claim one delivery at once; SQLite has one writer."""

    @abstractmethod
    def update_delivery(self, delivery: WebhookDelivery) -> None:
        """Save a delivery's attempts, next_attempt_ms, delivered_ms, last_status and last_error
        over the stored one of its event id; nothing if there is none (purged)."""

    @abstractmethod
    def save_token(self, token: Token) -> None:
        """Insert a token, or save the expiry and revocation of the stored token of its id (its
        client, hash and creation stay). StoreConflict if another token has its hash."""

    @abstractmethod
    def tokens(self, client: str) -> list[Token]:
        """The client's tokens, revoked and expired ones included, oldest (first saved) first."""


class Store(ABC):
    """A profile store. Reads never wait for writes; the writes of one client run one at a time.
    Opening one (store.open_store) brings its schema up to date or raises StoreError. Errors:
    see the module; in short, StoreUnavailable when the database cannot be used for a reason
    that passes (lost connection, full disk, lock held too long, lost conflict), StoreConflict
    when a write broke a rule of the schema (a uniqueness rule, mostly), StoreFailed for any
    other error of the database.

    Reads run on the caller's thread: SQLite's on a read-only connection of that thread's,
    PostgreSQL's on a pooled connection, waiting for one up to the store's timeout (then
    StoreUnavailable). Each read is one statement, so it sees one committed state."""

    # True when reads take microseconds and never wait on a network or a pool, so that an
    # event loop may run them itself instead of handing them to a thread.
    fast_reads: bool = False

    @abstractmethod
    def write(
        self, client: str | None, fn: Callable[[WriteTx], T], durable: bool = True,
        meanwhile: Callable[[], object] | None = None,
    ) -> T:  # fmt: skip
        """Run fn in one write transaction and return its result; an exception rolls it back.
        The writes of one client (the one whose data fn changes) run one at a time; None for a
        transaction that may touch any client's. fn may run on another thread (SQLite's
        writer) and must only use the store through its WriteTx. durable=False lets the commit
        skip waiting for the disk: only for work that can be redone from durable state (a
        batch chunk, whose cursor commits with it), since a power cut may undo it; a crash of
        the process still cannot.

        Threads: SQLite runs fn on its one writer thread, which runs every write of the process
        (of any client) one at a time, each in BEGIN IMMEDIATE; other processes wait for the
        file's lock up to its busy timeout. PostgreSQL runs fn on the caller's thread, on a
        pooled connection, holding the client's advisory lock until the commit or rollback
        (no lock for None). A closed SQLite store raises RuntimeError.

        meanwhile, if given, runs on the caller's thread once fn has returned and before
        write() does, for work that overlaps the store's (the worker reads its next chunk
        there). A store whose fn runs on the caller's thread (PostgreSQL) runs it before the
        commit, while the database may still be writing fn's last profiles; one whose fn runs
        on a writer thread of its own (SQLite) runs it after the commit, since two threads of
        one process share the interpreter and overlapping them gains nothing (measured).
        An error it raises rolls the transaction back if it is not committed yet. It does not
        run when fn raises (nor, on SQLite, when the commit fails)."""

    @abstractmethod
    def profile(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        """The profile found by an id of one kind (see model.ID_KINDS), or None; a tntId merged
        into another profile finds that one."""

    async def profile_async(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        """profile(), for a caller on an event loop, which it does not block while it waits
        (PostgreSQL reads on asyncio connections of its own, a pool opened on that loop by the
        first call; closed by close_async()). The base calls profile() in place, which suits a
        store with fast_reads."""
        return self.profile(client, id_kind, visitor_id)

    @abstractmethod
    def profile_rows(
        self, client: str, after_tnt_id: str | None, limit: int, with_third_party_id: bool | None = None
    ) -> list[tuple]:
        """Up to `limit` of the client's stored profiles in tntId order (byte order), those whose
        tntId comes after after_tnt_id (from the first if None), as rows of store.rows.PROFILE_COLUMNS
        (attributes as their JSON text; rows.profile_from_row makes a Profile of one); an empty list
        when none is left. with_third_party_id True: only those that have a thirdPartyId, False:
        only those that have none (the others are skipped in the database).
        Keyset paging on the primary key: pass the last tntId of a page to get the next one, each
        page one indexed range read, however deep. Expired profiles not yet purged are included
        (the rules above decide what is live); tntIds merged into others are not profiles."""

    @abstractmethod
    def attribute_names(
        self, client: str, with_third_party_id: bool | None, active_since_ms: int, modified_since_ms: int
    ) -> set[str]:
        """The names of the attributes of the client's stored profiles that were active (active_ms)
        and modified (modified_ms) at or after the times given; with_third_party_id as for
        profiles_page. Found by the database, with no profile decoded here."""

    @abstractmethod
    def has_client(self, client: str) -> bool:
        """Whether the store holds any profile of this client."""

    @abstractmethod
    def merged_tnt_ids(self, client: str, tnt_id: str) -> list[str]:
        """The tntIds merged into this profile, in byte order."""

    @abstractmethod
    def client_config(self, client: str) -> ClientConfig | None:
        """The client's own settings, or None if it has none."""

    @abstractmethod
    def token_by_hash(self, token_hash: str) -> Token | None:
        """The token (of any client) whose secret has this hash, or None."""

    @abstractmethod
    def tokens(self, client: str) -> list[Token]:
        """The client's tokens, revoked and expired ones included, oldest (first saved) first."""

    @abstractmethod
    def batches(self, client: str | None, limit: int, before_seq: int | None = None) -> list[Batch]:
        """Up to `limit` batches, newest (highest seq) first, of one client or all, accepted
        before before_seq if given (0 counts as not given)."""

    @abstractmethod
    def batch(self, seq: int) -> Batch | None:
        """A batch by seq, or None."""

    @abstractmethod
    def queue_state(self) -> QueueState:
        """How many batches wait to be applied, the oldest, and how many are retrying."""

    @abstractmethod
    def claim_next_batch(self) -> AbstractContextManager[Batch | None]:
        """For a worker's `with` block: the next batch to apply, or None. That is the earliest
        accepted batch that is neither complete nor stuck, of a client with no such batch
        accepted before it, and that no other worker holds; the worker holds it until the
        block ends. A store that cannot tell which batches other workers hold may hand out a
        held one: the cursor check of BatchService.write_chunk keeps that safe.

        SQLite hands out the earliest unfinished batch of all and holds nothing. PostgreSQL
        holds it with a session advisory lock on a pooled connection kept for the block (the
        lock goes with the session if the process dies), looking at the first 100 startable
        batches only. Errors are raised as the block starts; ending it raises none of its own."""

    @abstractmethod
    def deliveries(self, client: str, limit: int) -> list[WebhookDelivery]:
        """Up to `limit` of the client's webhook deliveries, newest (created last) first."""

    @abstractmethod
    def batch_payload(self, seq: int) -> bytes | None:
        """The bytes of a batch not yet complete; None once dropped or purged."""

    @abstractmethod
    def failed_rows(self, seq: int, limit: int | None = None, offset: int = 0, after_line: int = 0) -> list[FailedRow]:
        """A batch's failed rows in line order: of those after the line, up to `limit`, skipping `offset`."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and threads, once the writes queued have run (SQLite); safe to
        call twice. Nothing else is called after it."""

    async def close_async(self) -> None:
        """close(), on the event loop profile_async() ran on, where what it opened must close."""
        self.close()
