-- A batch whose next chunk keeps failing for a passing reason (a full disk, a lost connection)
-- says why, since when, and when the worker tries again; attempts that a dead worker never
-- ended are counted. A failed row keeps the length of its line, which may be stored cut.
-- Finished batches are found by age, to purge them.
ALTER TABLE batches ADD COLUMN last_error TEXT;
ALTER TABLE batches ADD COLUMN failing_since_ms INTEGER;
ALTER TABLE batches ADD COLUMN next_attempt_ms INTEGER;
ALTER TABLE batches ADD COLUMN open_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE failed_rows ADD COLUMN raw_length INTEGER NOT NULL DEFAULT 0;
UPDATE failed_rows SET raw_length = length(raw);
CREATE INDEX batches_finished ON batches (finished_ms) WHERE finished_ms IS NOT NULL;
