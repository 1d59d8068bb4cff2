-- Expired profiles are found by the hour of their last write, as on PostgreSQL, no longer by its
-- millisecond: every write of a profile changes active_ms, and with an index on it every write
-- rewrote an index entry too; active_hour changes at most once an hour, and a rewrite of a profile
-- in the same hour leaves the index alone (measured: an update of a stored profile 2.1 µs
-- cheaper; see docs/notes.md, 2026-12-01).
ALTER TABLE profiles ADD COLUMN active_hour INTEGER NOT NULL DEFAULT 0;
UPDATE profiles SET active_hour = active_ms / 3600000;
DROP INDEX profiles_active;
CREATE INDEX profiles_active_hour ON profiles (active_hour);
