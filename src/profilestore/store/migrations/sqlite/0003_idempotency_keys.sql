-- The Idempotency-Key a batch was submitted with, per client: the same key and body again
-- within the window answer that batch instead of storing another. Deleted with their batch.
CREATE TABLE idempotency_keys (
    client TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    PRIMARY KEY (client, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_seq ON idempotency_keys (seq);
