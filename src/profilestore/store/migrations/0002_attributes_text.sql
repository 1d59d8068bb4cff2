-- A profile's attributes as text, not json: PostgreSQL parsed every written value to check
-- JSON that the service itself had just encoded, 15 % of its time for an insert pass of the
-- standard batch. Rewrites the profiles table once (it holds an exclusive lock meanwhile).
ALTER TABLE profiles ALTER COLUMN attributes TYPE text;
