-- Completion webhooks (docs/operations.md): a client's URL and signing secret, and every
-- delivery, made in the transaction that finishes its batch and kept until it is delivered or
-- given up; deleted with their batch.
ALTER TABLE clients ADD COLUMN webhook_url TEXT;
ALTER TABLE clients ADD COLUMN webhook_secret TEXT;
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
