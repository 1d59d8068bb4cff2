"""The store interface: the handful of named operations the rules above it need.

A store only keeps and finds things; every rule (what an empty cell means, v1 versus v2,
ordering, counting) lives in the service modules that call it. Each backend implements
`Store` (reads, and `write` to run one transaction) and `WriteTx` (the operations allowed
inside that transaction).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, TypeVar

T = TypeVar("T")

QUEUED, RUNNING, COMPLETE, STUCK = "queued", "running", "complete", "stuck"


class StoreError(Exception):
    """The store cannot be opened: a bad URL, a missing driver, an unreachable server, or a
    schema that is behind."""


class StoreUnavailable(Exception):
    """The store cannot do this now, for a reason that passes: the database cannot be reached
    or its connection was lost, the disk is full, the database is locked by another process
    for longer than the busy timeout, or the transaction lost a conflict with another. Nothing
    of the operation was kept, except that a write whose connection was lost during COMMIT may
    have been: a caller redoes it only where that is safe. Try again later."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause  # what failed, in a few words, for logs and error messages


# The ids a profile can be found by. A tntId merged into another profile keeps resolving to it.
ID_KINDS = ("tntId", "thirdPartyId", "marketingCloudVisitorId")


# An attribute is the list [value, modified_ms, order]: its value (a string, as in Target), its
# last write, and the acceptance order of that write (see profiles.batch_write_order). A list,
# the shape it has in the stores' JSON, because a batch decodes and encodes millions of them:
# with no object to build per attribute, a stored profile of the standard batch decodes in
# 2.3 µs instead of 3.4 and encodes in 0.4 µs instead of 1.1.
Attribute = list
VALUE, MODIFIED_MS, ORDER = range(3)


@dataclass(slots=True)
class Profile:
    client: str
    tnt_id: str
    created_ms: int
    modified_ms: int  # last change of an attribute
    third_party_id: str | None = None
    mcvid: str | None = None  # marketingCloudVisitorId (ECID)
    attributes: dict[str, Attribute] = field(default_factory=dict)
    active_ms: int = 0  # last write of any kind; the profile's lifetime runs from here


@dataclass
class ClientConfig:
    """A client's own settings; None means the service-wide default."""

    client: str
    auth_required: bool = False
    daily_rows: int | None = None
    calls_per_minute: int | None = None


@dataclass
class Token:
    id: str  # public, to list and revoke it by
    client: str
    hash: str  # sha256 of the secret; the secret itself is never stored
    created_ms: int
    expires_ms: int
    revoked_ms: int | None = None


@dataclass
class Batch:
    seq: int  # acceptance order, never reused
    client: str
    version: int  # 1: update existing profiles only; 2: create missing ones
    accepted_ms: int
    size: int  # data rows
    payload_bytes: int
    header: bytes  # the header line as sent, kept after the payload is dropped
    cursor: int  # byte offset in the payload of the next line to apply
    cursor_line: int  # line number at the cursor
    state: str = QUEUED
    consumed: int = 0
    successful: int = 0
    not_found: int = 0
    failed: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    attempts: int = 0  # consecutive failed attempts at the next chunk, for reasons that do not pass
    open_attempts: int = 0  # attempts begun in a row that never ended (see batches.MAX_OPEN_ATTEMPTS)
    stuck_reason: str | None = None
    held_reason: str | None = None  # why the worker is applying it slowly right now
    last_error: str | None = None  # why the last attempt at the next chunk failed
    failing_since_ms: int | None = None  # the first of the failed attempts in a row
    next_attempt_ms: int | None = None  # when the worker tries again


@dataclass(frozen=True)
class QueueState:
    """The batches not yet complete or stuck, of all clients."""

    waiting: int
    oldest_accepted_ms: int | None
    retrying: int  # those whose next chunk failed for a passing reason and is tried again


@dataclass(frozen=True)
class FailedRow:
    line: int
    id: str
    reason: str
    raw: bytes  # the line as sent, or its beginning if it was longer than kept (see raw_length)
    raw_length: int  # the line's length as sent, in bytes


class WriteTx(ABC):
    """Operations inside one write transaction; all of them commit together or not at all.
    Like every operation of a store, they raise StoreUnavailable for a failure that passes;
    the store's write() turns the driver's own errors of that kind into it.

    save_profiles and insert_profiles may return while the database is still writing: the
    transaction's next operation, or its commit, waits for that (and raises its error, which
    rolls the whole transaction back). The caller can work on something else meanwhile."""

    @abstractmethod
    def insert_batch(self, batch: Batch, payload: bytes) -> int:
        """Store a new batch and its bytes durably; return its seq (batch.seq is ignored)."""

    @abstractmethod
    def batch(self, seq: int) -> Batch | None:
        """The batch as of this transaction."""

    @abstractmethod
    def update_batch(self, batch: Batch) -> None:
        """Save the batch's state, cursor and counters."""

    @abstractmethod
    def drop_payload(self, seq: int) -> None:
        """Forget the bytes of a batch that needs them no more."""

    @abstractmethod
    def add_failed_rows(self, seq: int, rows: Iterable[FailedRow]) -> None:
        """Record rows of a batch that failed, with their reasons."""

    @abstractmethod
    def purge_batches(self, finished_before_ms: int, limit: int) -> int:
        """Delete up to `limit` batches (of any client) that finished, complete or stuck, before
        the time, with their failed rows and bytes, but never the newest batch of all, whose
        seq orders later single writes (see profiles.single_write_order); how many."""

    @abstractmethod
    def profiles_by(self, client: str, id_kind: str, ids: Iterable[str]) -> dict[str, Profile]:
        """The existing profiles found by these ids of one kind (see ID_KINDS), keyed by the id
        asked for. Ids that lead to the same profile share one Profile object."""

    @abstractmethod
    def save_profiles(self, profiles: list[Profile]) -> None:
        """Insert or replace these profiles whole (ids, timestamps and attributes)."""

    @abstractmethod
    def insert_profiles(self, profiles: list[Profile]) -> None:
        """Insert profiles known to be new: their tntIds were just made, and their other ids
        were looked up in this transaction and found on no profile. A store may write them
        faster than save_profiles can, since nothing stored needs replacing."""

    @abstractmethod
    def retire_profile(self, client: str, tnt_id: str, into_tnt_id: str) -> None:
        """Delete a profile merged into another; its tntId (and every tntId merged into it
        before) resolves to into_tnt_id from now on."""

    @abstractmethod
    def delete_profile(self, client: str, tnt_id: str) -> None:
        """Delete a profile and every tntId merged into it."""

    @abstractmethod
    def purge_inactive(self, active_before_ms: int, limit: int) -> int:
        """Delete up to `limit` profiles (of any client) inactive since before the time, with
        the tntIds merged into them; how many were deleted."""

    @abstractmethod
    def delete_failed_rows(self, client: str, ids: Iterable[str]) -> int:
        """Forget the failed rows of the client's batches keyed by these ids; how many."""

    @abstractmethod
    def last_batch_seq(self) -> int:
        """The seq of the latest accepted batch, 0 if none."""

    @abstractmethod
    def rows_accepted_since(self, client: str, since_ms: int) -> int:
        """Data rows of the client's batches accepted since the time."""

    @abstractmethod
    def save_client(self, config: ClientConfig) -> None:
        """Insert or replace a client's settings."""

    @abstractmethod
    def save_token(self, token: Token) -> None:
        """Insert or replace a token."""

    @abstractmethod
    def tokens(self, client: str) -> list[Token]:
        """The client's tokens, revoked and expired ones included, oldest first."""


class Store(ABC):
    """A profile store. Reads never wait for writes; the writes of one client run one at a time.
    Opening one (store.open_store) brings its schema up to date or raises StoreError. Every
    operation raises StoreUnavailable when the database cannot be used for a reason that
    passes (lost connection, full disk, lock held too long, lost conflict); other errors of the
    driver pass through as they are."""

    # True when reads take microseconds and never wait on a network or a pool, so that an
    # event loop may run them itself instead of handing them to a thread.
    fast_reads: bool = False

    @abstractmethod
    def write(self, client: str | None, fn: Callable[[WriteTx], T], durable: bool = True) -> T:
        """Run fn in one write transaction and return its result; an exception rolls it back.
        The writes of one client (the one whose data fn changes) run one at a time; None for a
        transaction that may touch any client's. fn may run on another thread (SQLite's
        writer) and must only use the store through its WriteTx. durable=False lets the commit
        skip waiting for the disk: only for work that can be redone from durable state (a
        batch chunk, whose cursor commits with it), since a power cut may undo it; a crash of
        the process still cannot."""

    @abstractmethod
    def profile(self, client: str, id_kind: str, visitor_id: str) -> Profile | None:
        """The profile found by an id of one kind (see ID_KINDS), or None."""

    @abstractmethod
    def has_client(self, client: str) -> bool:
        """Whether the store holds any profile of this client."""

    @abstractmethod
    def merged_tnt_ids(self, client: str, tnt_id: str) -> list[str]:
        """The tntIds merged into this profile."""

    @abstractmethod
    def client_config(self, client: str) -> ClientConfig | None:
        """The client's own settings, or None if it has none."""

    @abstractmethod
    def token_by_hash(self, token_hash: str) -> Token | None:
        """The token whose secret has this hash."""

    @abstractmethod
    def tokens(self, client: str) -> list[Token]:
        """The client's tokens, revoked and expired ones included, oldest first."""

    @abstractmethod
    def batches(self, client: str | None, limit: int, before_seq: int | None = None) -> list[Batch]:
        """Batches, newest first, of one client or all, accepted before before_seq if given."""

    @abstractmethod
    def batch(self, seq: int) -> Batch | None:
        """A batch by seq, or None."""

    @abstractmethod
    def queue_state(self) -> QueueState:
        """How many batches wait to be applied, the oldest, and how many are retrying."""

    @abstractmethod
    def claim_next_batch(self) -> ContextManager[Batch | None]:
        """For a worker's `with` block: the next batch to apply, or None. That is the earliest
        accepted batch that is neither complete nor stuck, of a client with no such batch
        accepted before it, and that no other worker holds; the worker holds it until the
        block ends. A store that cannot tell which batches other workers hold may hand out a
        held one: WriteTx's cursor check (see BatchService.apply_chunk) keeps that safe."""

    @abstractmethod
    def batch_payload(self, seq: int) -> bytes | None:
        """The bytes of a batch not yet complete."""

    @abstractmethod
    def failed_rows(self, seq: int, limit: int | None = None, offset: int = 0, after_line: int = 0) -> list[FailedRow]:
        """A batch's failed rows in line order: of those after the line, up to `limit`, skipping `offset`."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and threads; safe to call twice."""
