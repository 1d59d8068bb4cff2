"""What profilestore keeps: profiles, batches, their failed rows, tokens and client settings.

Plain data, shared by the rules (the service modules), the stores and the HTTP layer; none of
them decides anything here. The rules that change these live in profiles.py, batches.py and
their siblings; how the stores lay them out in rows, in store/rows.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .ids import batch_id

# The ids a profile can be found by (see docs/glossary.md for Target's other names for them).
# A tntId merged into another profile keeps resolving to it.
ID_KINDS = ("tntId", "thirdPartyId", "marketingCloudVisitorId")

# No id, attribute name or value holds NUL: PostgreSQL cannot store it in text, and an answer
# that depends on the store is worse than one clear refusal everywhere.
NUL = "\x00"
NUL_PROBLEM = "the NUL character (%00) is not allowed"


def storable(text: str) -> bool:
    """Whether the text can be an id, name or value: no stored one holds NUL, so a lookup of
    one that does finds nothing without asking the store."""
    return NUL not in text


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
    active_ms: int = 0  # last write of any kind; the profile's lifetime runs from here (see profiles.extend_lifetime)


@dataclass
class ClientConfig:
    """A client's own settings; None means the service-wide default."""

    client: str
    auth_required: bool = False
    daily_rows: int | None = None
    calls_per_minute: int | None = None
    webhook_url: str | None = None  # where completion webhooks go; None: no webhooks
    webhook_secret: str | None = None  # the HMAC key their signatures use


@dataclass
class Token:
    id: str  # public, to list and revoke it by
    client: str
    hash: str  # sha256 of the secret; the secret itself is never stored
    created_ms: int
    expires_ms: int
    revoked_ms: int | None = None


class BatchState(StrEnum):
    """Where a batch is. Target shows queued and running as "incomplete" (see target_status)."""

    QUEUED = "queued"  # accepted, no row applied yet
    RUNNING = "running"  # some chunks applied
    COMPLETE = "complete"  # every row accounted for: applied, not found, or failed with a reason
    STUCK = "stuck"  # the worker gave up on it; its reason says why

    @property
    def finished(self) -> bool:
        return self in (BatchState.COMPLETE, BatchState.STUCK)

    @property
    def target_status(self) -> str:
        """The status Target's batchStatus shows."""
        return self.value if self.finished else "incomplete"


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
    state: BatchState = BatchState.QUEUED
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

    def __post_init__(self) -> None:
        self.state = BatchState(self.state)  # the stores read it back as text

    @property
    def id(self) -> str:
        return batch_id(self.client, self.accepted_ms, self.seq)


@dataclass(frozen=True)
class Failing:
    """What a worker keeps failing at, as it knows it: the batch record may not say, when the
    store cannot take even that write (a full disk)."""

    batch_id: str | None  # None: claiming a batch or purging failed
    last_error: str
    failing_since_ms: int
    next_attempt_ms: int


@dataclass(frozen=True)
class QueueState:
    """The batches not yet complete or stuck, of all clients."""

    waiting: int
    oldest_accepted_ms: int | None
    retrying: int  # those whose next chunk failed for a passing reason and is tried again


@dataclass(frozen=True)
class IdempotencyKey:
    """The Idempotency-Key a batch was submitted with (see BatchService.submit)."""

    client: str
    key: str
    digest: str  # sha256 of the batch's version and bytes, hex
    seq: int  # the batch it made
    accepted_ms: int


@dataclass
class WebhookDelivery:
    """A completion webhook to send (see webhooks.py): its body is rendered once, when the event
    happens, so every attempt sends the same bytes."""

    event_id: str  # uuid4 hex; the receiver dedups by it
    client: str
    seq: int  # the batch's
    event: str  # batch.completed or batch.stuck
    body: str  # JSON: the batch's record
    created_ms: int
    attempts: int = 0
    next_attempt_ms: int | None = None  # None once delivered or given up
    delivered_ms: int | None = None
    last_status: int | None = None  # the HTTP status of the last attempt
    last_error: str | None = None


# What a failed row keeps: an id of more than KEPT_ID_CHARS (four times the longest valid one)
# is cut and ends with …, and so is a longer line; the failures file says which lines it holds
# only in part.
KEPT_ID_CHARS = 1024
KEPT_LINE_BYTES = 8 * 1024


@dataclass(frozen=True, slots=True)
class FailedRow:
    line: int
    id: str
    reason: str
    raw: bytes  # the line as sent, or its beginning if it was longer than kept (see raw_length)
    raw_length: int  # the line's length as sent, in bytes

    @classmethod
    def kept(cls, line: int, visitor_id: str, reason: str, raw: bytes) -> FailedRow:
        """A row that failed, as kept: its id and line cut to KEPT_ID_CHARS and KEPT_LINE_BYTES."""
        kept_id = visitor_id if len(visitor_id) <= KEPT_ID_CHARS else visitor_id[:KEPT_ID_CHARS] + "…"
        return cls(line, kept_id, reason, raw[:KEPT_LINE_BYTES], len(raw))
