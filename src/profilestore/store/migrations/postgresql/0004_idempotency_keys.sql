-- The Idempotency-Key a batch was submitted with, per client: the same key and body again
-- within the window answer that batch instead of storing another. Deleted with their batch.
CREATE TABLE idempotency_keys (
    client text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    digest text NOT NULL,
    seq bigint NOT NULL,
    accepted_ms bigint NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_keys_seq ON idempotency_keys (seq);
