-- Completion webhooks (docs/operations.md): a client's URL and signing secret, and every
-- delivery, made in the transaction that finishes its batch and kept until it is delivered or
-- given up; deleted with their batch.
ALTER TABLE clients ADD COLUMN webhook_url text;
ALTER TABLE clients ADD COLUMN webhook_secret text;
CREATE TABLE webhook_deliveries (
    event_id text PRIMARY KEY,
    client text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    event text NOT NULL,
    body text NOT NULL,
    created_ms bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint,
    delivered_ms bigint,
    last_status integer,
    last_error text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE next_attempt_ms IS NOT NULL;
CREATE INDEX webhook_deliveries_by_client ON webhook_deliveries (client, created_ms);
CREATE INDEX webhook_deliveries_seq ON webhook_deliveries (seq);
