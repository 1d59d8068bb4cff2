-- A batch whose next chunk keeps failing for a passing reason (a full disk, a lost connection)
-- says why, since when, and when the worker tries again; attempts that a dead worker never
-- ended are counted. A failed row keeps the length of its line, which may be stored cut.
-- Finished batches are found by age, to purge them.
ALTER TABLE batches ADD COLUMN last_error text, ADD COLUMN failing_since_ms bigint, ADD COLUMN next_attempt_ms bigint,
    ADD COLUMN open_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE failed_rows ADD COLUMN raw_length bigint;
UPDATE failed_rows SET raw_length = length(raw);
ALTER TABLE failed_rows ALTER COLUMN raw_length SET NOT NULL;
CREATE INDEX batches_finished ON batches (finished_ms) WHERE finished_ms IS NOT NULL;
