-- The SQLite schema as the migrations beside this file leave it (PRAGMA user_version 6), to read.
-- A store never runs this file: it applies the migrations it lacks. A new migration changes
-- this file too, or tests/test_migrations.py fails.

-- Every accepted batch, in acceptance order: seq is never reused (AUTOINCREMENT), since a
-- batch's seq orders its writes. The cursor is where the worker applies the next chunk from;
-- the counters are those of Target's batchStatus.
CREATE TABLE batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client TEXT NOT NULL,
    version INTEGER NOT NULL,  -- 1: updates existing profiles only; 2: creates missing ones
    accepted_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,  -- data rows
    payload_bytes INTEGER NOT NULL,
    header BLOB NOT NULL,  -- the header line as sent, kept after the payload is dropped
    cursor INTEGER NOT NULL,  -- byte offset in the payload of the next line to apply
    cursor_line INTEGER NOT NULL,  -- its line number
    state TEXT NOT NULL,  -- queued, running, complete or stuck
    consumed INTEGER NOT NULL DEFAULT 0,
    successful INTEGER NOT NULL DEFAULT 0,
    not_found INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER,
    finished_ms INTEGER,  -- when it became complete or stuck
    attempts INTEGER NOT NULL DEFAULT 0,
    stuck_reason TEXT,
    held_reason TEXT,
    last_error TEXT,  -- why the last attempt at the next chunk failed
    failing_since_ms INTEGER,
    next_attempt_ms INTEGER,
    open_attempts INTEGER NOT NULL DEFAULT 0  -- attempts begun that never ended
);
CREATE INDEX batches_to_apply ON batches (seq) WHERE state NOT IN ('complete', 'stuck');
CREATE INDEX batches_by_client ON batches (client, accepted_ms);
CREATE INDEX batches_finished ON batches (finished_ms) WHERE finished_ms IS NOT NULL;

-- A batch's bytes, until it is complete.
CREATE TABLE batch_payloads (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);

-- The rows of a batch that failed, by line, with their reasons and the line as sent (its
-- beginning if it was longer than kept; raw_length is its length as sent).
CREATE TABLE failed_rows (
    seq INTEGER NOT NULL,
    line INTEGER NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL,
    raw_length INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, line)
) WITHOUT ROWID;

-- A client's profiles by tntId; a thirdPartyId or marketingCloudVisitorId (mcvid) is on one
-- profile of the client at most. active_ms is the last write of any kind, which the lifetime
-- runs from; expired profiles are found by its hour, active_hour, which a write changes at most
-- once an hour.
CREATE TABLE profiles (
    client TEXT NOT NULL,
    tnt_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    third_party_id TEXT,
    mcvid TEXT,
    attributes TEXT NOT NULL,  -- JSON {name: [value, modified_ms, order]}
    active_ms INTEGER NOT NULL,
    active_hour INTEGER NOT NULL DEFAULT 0,  -- active_ms / 3,600,000
    PRIMARY KEY (client, tnt_id)
);
CREATE INDEX profiles_active_hour ON profiles (active_hour);
CREATE UNIQUE INDEX profiles_third_party_id ON profiles (client, third_party_id) WHERE third_party_id IS NOT NULL;
CREATE UNIQUE INDEX profiles_mcvid ON profiles (client, mcvid) WHERE mcvid IS NOT NULL;
-- Those without a thirdPartyId, which an export's pcId file reads alone.
CREATE INDEX profiles_without_third_party_id ON profiles (client, tnt_id) WHERE third_party_id IS NULL;

-- The tntIds of profiles merged into another, and the tntId each resolves to now.
CREATE TABLE merged_ids (
    client TEXT NOT NULL,
    tnt_id TEXT NOT NULL,
    into_tnt_id TEXT NOT NULL,
    PRIMARY KEY (client, tnt_id)
) WITHOUT ROWID;
CREATE INDEX merged_ids_into ON merged_ids (client, into_tnt_id);

-- A client's own settings; a NULL one is the service-wide default.
CREATE TABLE clients (
    client TEXT PRIMARY KEY,
    auth_required INTEGER NOT NULL,
    daily_rows INTEGER,
    calls_per_minute INTEGER,
    webhook_url TEXT,  -- where completion webhooks go; NULL: none
    webhook_secret TEXT  -- the key of their signatures
);

-- Profile API tokens: the sha256 of each secret, never the secret. Listed in the order saved
-- (rowid).
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX tokens_by_client ON tokens (client);

-- The Idempotency-Key a batch was submitted with, per client, the digest of its version and
-- body, and the batch it made; deleted with the batch.
CREATE TABLE idempotency_keys (
    client TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    PRIMARY KEY (client, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_seq ON idempotency_keys (seq);

-- Completion webhooks to send: one per batch that completed or became stuck while its client had
-- a webhook URL, made in that transaction; next_attempt_ms is NULL once delivered or given up.
-- Deleted with their batch.
CREATE TABLE webhook_deliveries (
    event_id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    delivered_ms INTEGER,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE next_attempt_ms IS NOT NULL;
CREATE INDEX webhook_deliveries_by_client ON webhook_deliveries (client, created_ms);
CREATE INDEX webhook_deliveries_seq ON webhook_deliveries (seq);
