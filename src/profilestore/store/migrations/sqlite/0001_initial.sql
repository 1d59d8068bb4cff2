-- The SQLite schema as first released (user_version 1); later migrations change it.

CREATE TABLE batches (
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
CREATE INDEX batches_to_apply ON batches (seq) WHERE state NOT IN ('complete', 'stuck');
CREATE INDEX batches_by_client ON batches (client, accepted_ms);
CREATE TABLE batch_payloads (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE failed_rows (
    seq INTEGER NOT NULL,
    line INTEGER NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL,
    PRIMARY KEY (seq, line)
) WITHOUT ROWID;
CREATE TABLE profiles (
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
CREATE INDEX profiles_active ON profiles (active_ms);
CREATE UNIQUE INDEX profiles_third_party_id
    ON profiles (client, third_party_id) WHERE third_party_id IS NOT NULL;
CREATE UNIQUE INDEX profiles_mcvid ON profiles (client, mcvid) WHERE mcvid IS NOT NULL;
CREATE TABLE merged_ids (
    client TEXT NOT NULL,
    tnt_id TEXT NOT NULL,
    into_tnt_id TEXT NOT NULL,
    PRIMARY KEY (client, tnt_id)
) WITHOUT ROWID;
CREATE INDEX merged_ids_into ON merged_ids (client, into_tnt_id);
CREATE TABLE clients (
    client TEXT PRIMARY KEY,
    auth_required INTEGER NOT NULL,
    daily_rows INTEGER,
    calls_per_minute INTEGER
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX tokens_by_client ON tokens (client);
